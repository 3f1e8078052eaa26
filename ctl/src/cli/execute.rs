//! Sending a prepared operation and printing its outcome.

use std::io::Write;

use anyhow::{Context, anyhow};
use cairn_client::{Client, pb};
use serde::Serialize;

use super::failure::client_error;
use super::output;
use super::request::Operation;

/// How results are to be printed.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// `--json`: one JSON object on stdout.
    pub json: bool,
    /// Stdout is a terminal: `get` then appends a newline to the value.
    pub terminal: bool,
}

/// Runs `operation` against the cluster and prints the result to `out`.
pub async fn execute(
    client: &Client,
    operation: Operation,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match operation {
        Operation::Put(request) => {
            let response = client.put(request).await.map_err(client_error)?;
            if format.json {
                print_json(out, &output::put_json(&response))
            } else {
                let revision = output::revision(response.header.as_ref());
                print(
                    out,
                    output::write_human(revision, response.kv.as_ref()).as_bytes(),
                )
            }
        }
        Operation::Get(request) => {
            let read = request.read.unwrap_or_default();
            let response = client.get(request.key, read).await.map_err(client_error)?;
            let kv = response.kv.ok_or_else(|| anyhow!("key not found"))?;
            if format.json {
                print_json(out, &output::kv_json(&kv))
            } else {
                print(out, &kv.value)?;
                if format.terminal {
                    print(out, b"\n")
                } else {
                    Ok(())
                }
            }
        }
        Operation::Update(request) => {
            let response = client.update(request).await.map_err(|err| {
                match err.code() {
                    // An update's only NOT_FOUND is its key being absent.
                    Some(tonic::Code::NotFound) => anyhow!("key not found"),
                    _ => client_error(err),
                }
            })?;
            if format.json {
                print_json(out, &output::update_json(&response))
            } else {
                let revision = output::revision(response.header.as_ref());
                print(
                    out,
                    output::write_human(revision, response.kv.as_ref()).as_bytes(),
                )
            }
        }
        Operation::Delete(request) => {
            let response = client.delete(request).await.map_err(client_error)?;
            if !response.existed {
                return Err(anyhow!("key not found"));
            }
            if format.json {
                print_json(out, &output::delete_json(&response))
            } else {
                print(out, b"deleted\n")
            }
        }
        Operation::Scan { request, limit } => scan(client, request, limit, format, out).await,
        Operation::Batch(request) => {
            let response = client.batch(request.clone()).await.map_err(client_error)?;
            if format.json {
                print_json(out, &output::batch_json(&request, &response))
            } else {
                print(out, output::batch_human(&response).as_bytes())
            }
        }
        Operation::Txn(request) => {
            let response = client.txn(request.clone()).await.map_err(client_error)?;
            if format.json {
                print_json(out, &output::txn_json(&request, &response))
            } else {
                print(out, output::txn_human(&request, &response).as_bytes())
            }
        }
    }
}

/// Scans page by page, printing human output as pages arrive and stopping
/// after `limit` keys.
async fn scan(
    client: &Client,
    mut request: pb::ScanRequest,
    limit: Option<u32>,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let keys_only = request.keys_only;
    let mut remaining = limit;
    let mut revision = 0;
    let mut collected = Vec::new();
    loop {
        if let Some(remaining) = remaining {
            request.limit = remaining;
        }
        let page = client.scan(request.clone()).await.map_err(client_error)?;
        revision = revision.max(output::revision(page.header.as_ref()));
        let mut kvs = page.kvs;
        if let Some(left) = remaining.as_mut() {
            kvs.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
            *left -= u32::try_from(kvs.len()).unwrap_or(*left);
        }
        if format.json {
            collected.extend(kvs);
        } else {
            for kv in &kvs {
                print(out, output::scan_line(kv, keys_only).as_bytes())?;
            }
        }
        if remaining == Some(0) || page.next_page_token.is_empty() {
            break;
        }
        if page.next_page_token == request.page_token {
            return Err(anyhow!(
                "unexpected response from server: scan page token did not advance"
            ));
        }
        request.page_token = page.next_page_token;
    }
    if format.json {
        print_json(out, &output::scan_json(&collected, revision))?;
    }
    Ok(())
}

fn print(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<()> {
    out.write_all(bytes).context("writing output")
}

fn print_json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    // Serialized up front so that write errors (a closed pipe) surface as
    // plain I/O errors.
    let mut bytes = serde_json::to_vec(value).context("serializing output")?;
    bytes.push(b'\n');
    print(out, &bytes)
}
