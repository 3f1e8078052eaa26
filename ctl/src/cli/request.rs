//! Turning a parsed command line into the protobuf request to send.
//!
//! Everything the user supplied (values from files or stdin, batch and txn
//! files) is read and validated here, before connecting, so that a mistake
//! is reported as a usage error even when no server is reachable.

use std::path::Path;

use cairn_client::pb;

use super::args::{Command, TtlArgs};
use super::failure::UsageError;
use super::input::{arg_bytes, read_file, read_value};
use super::request_file::{parse_batch, parse_txn};

/// A fully prepared operation.
#[derive(Debug, PartialEq)]
pub enum Operation {
    /// `put`.
    Put(pb::PutRequest),
    /// `get`.
    Get(pb::GetRequest),
    /// `update`.
    Update(pb::UpdateRequest),
    /// `delete`.
    Delete(pb::DeleteRequest),
    /// `scan`: the first page's request, and the total number of keys to
    /// print (`None` = all).
    Scan {
        /// The request for the first page.
        request: pb::ScanRequest,
        /// Stop after this many keys.
        limit: Option<u32>,
    },
    /// `batch`.
    Batch(pb::BatchRequest),
    /// `txn`.
    Txn(pb::TxnRequest),
}

/// Builds the request for `command`, reading any value or request file.
pub fn prepare(command: Command) -> Result<Operation, UsageError> {
    Ok(match command {
        Command::Put {
            key,
            value,
            ttl,
            if_absent,
            if_revision,
        } => Operation::Put(pb::PutRequest {
            key: arg_bytes(key),
            value: read_value(value)?,
            ttl_ms: ttl_ms(&ttl)?,
            keep_ttl: ttl.keep_ttl,
            if_absent,
            if_mod_revision: if_revision,
            return_previous: false,
            request_id: Default::default(),
        }),
        Command::Get { key, serializable } => {
            let consistency = if serializable {
                pb::Consistency::Serializable
            } else {
                pb::Consistency::Linearizable
            };
            Operation::Get(pb::GetRequest {
                key: arg_bytes(key),
                read: Some(pb::ReadOptions {
                    consistency: consistency.into(),
                    min_revision: 0,
                }),
            })
        }
        Command::Update {
            key,
            value,
            ttl,
            if_revision,
        } => Operation::Update(pb::UpdateRequest {
            key: arg_bytes(key),
            value: read_value(value)?,
            ttl_ms: ttl_ms(&ttl)?,
            keep_ttl: ttl.keep_ttl,
            if_mod_revision: if_revision,
            return_previous: false,
            request_id: Default::default(),
        }),
        Command::Delete { key, if_revision } => Operation::Delete(pb::DeleteRequest {
            key: arg_bytes(key),
            if_mod_revision: if_revision,
            return_previous: false,
            request_id: Default::default(),
        }),
        Command::Scan {
            prefix,
            start,
            end,
            limit,
            keys_only,
        } => Operation::Scan {
            request: pb::ScanRequest {
                prefix: prefix.map(arg_bytes).unwrap_or_default(),
                start: start.map(arg_bytes).unwrap_or_default(),
                end: end.map(arg_bytes).unwrap_or_default(),
                limit: limit.unwrap_or(0),
                page_token: Vec::new(),
                keys_only,
                read: None,
                shards: Vec::new(),
            },
            limit,
        },
        Command::Batch { file } => {
            let json = read_file(&file)?;
            Operation::Batch(parse_batch(&json).map_err(|e| file_error(&file, &e))?)
        }
        Command::Txn { file } => {
            let json = read_file(&file)?;
            Operation::Txn(parse_txn(&json).map_err(|e| file_error(&file, &e))?)
        }
        Command::Cluster { .. }
        | Command::Shards
        | Command::Node { .. }
        | Command::Rebalance { .. }
        | Command::Playground(_)
        | Command::Login { .. }
        | Command::Whoami
        | Command::User { .. }
        | Command::Role { .. }
        | Command::Token { .. }
        | Command::Auth { .. } => {
            return Err(UsageError::new(
                "cluster commands are not key-value operations".into(),
            ));
        }
    })
}

/// The `ttl_ms` field for `--ttl`.
fn ttl_ms(ttl: &TtlArgs) -> Result<u64, UsageError> {
    match ttl.ttl {
        None => Ok(0),
        Some(ttl) => u64::try_from(ttl.as_millis())
            .map_err(|_| UsageError::new("--ttl is too large".to_string())),
    }
}

/// `FILE: what is wrong`, naming stdin as such.
fn file_error(file: &Path, err: &anyhow::Error) -> UsageError {
    let name = if file.as_os_str() == "-" {
        "stdin".into()
    } else {
        file.display().to_string()
    };
    UsageError::new(format!("{name}: {err:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use clap::Parser;

    fn prepared(args: &[&str]) -> Operation {
        let cli = Cli::try_parse_from(std::iter::once("cairnctl").chain(args.iter().copied()))
            .expect("valid command line");
        prepare(cli.command).expect("valid operation")
    }

    #[test]
    fn put_flags_map_to_request_fields() {
        assert_eq!(
            prepared(&[
                "put",
                "k",
                "v",
                "--ttl",
                "1m",
                "--if-absent",
                "--if-revision",
                "4"
            ]),
            Operation::Put(pb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ttl_ms: 60_000,
                keep_ttl: false,
                if_absent: true,
                if_mod_revision: Some(4),
                return_previous: false,
                request_id: Default::default()
            })
        );
    }

    #[test]
    fn get_is_linearizable_unless_serializable_is_asked_for() {
        let consistency = |args: &[&str]| match prepared(args) {
            Operation::Get(g) => g.read.map(|r| r.consistency()),
            _ => None,
        };
        assert_eq!(
            consistency(&["get", "k"]),
            Some(pb::Consistency::Linearizable)
        );
        assert_eq!(
            consistency(&["get", "k", "--serializable"]),
            Some(pb::Consistency::Serializable)
        );
    }

    #[test]
    fn scan_limit_is_both_page_size_and_total() {
        assert_eq!(
            prepared(&["scan", "--prefix", "p/", "--limit", "10", "--keys-only"]),
            Operation::Scan {
                request: pb::ScanRequest {
                    prefix: b"p/".to_vec(),
                    limit: 10,
                    keys_only: true,
                    ..Default::default()
                },
                limit: Some(10),
            }
        );
    }

    #[test]
    fn invalid_batch_file_is_a_usage_error_naming_the_file() {
        let path =
            std::env::temp_dir().join(format!("cairnctl-batch-test-{}.json", std::process::id()));
        std::fs::write(&path, br#"{"ops": [{"frobnicate": {}}]}"#).expect("temp file is writable");
        let cli = Cli::try_parse_from(["cairnctl".as_ref(), "batch".as_ref(), path.as_os_str()])
            .expect("valid command line");
        let result = prepare(cli.command);
        let _ = std::fs::remove_file(&path);
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("frobnicate"), "{message}");
    }
}
