//! `cairnctl`, the command-line client: argument parsing, request building,
//! output formatting and exit codes. Compiled into the binary only (it uses
//! `anyhow`, which the library does not).

mod access;
mod admin;
mod args;
mod execute;
mod failure;
mod input;
mod node;
mod output;
mod playground;
mod request;
mod request_file;

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use cairn_client::{Client, ClientOptions};
use clap::Parser;

use args::Cli;
use execute::Format;
use failure::{UsageError, client_error};

/// Parses the command line, runs the command and maps the outcome to an
/// exit status (see [`failure`]).
pub async fn main() -> ExitCode {
    // Exits with status 2 (or 0 for --help/--version) on its own.
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure::report(&err),
    }
}

/// What a command line asks for, decided before connecting.
enum Plan {
    Kv(request::Operation),
    Cluster(args::ClusterCommand),
    Shards,
    Node(args::NodeCommand),
    Rebalance(args::RebalanceCommand),
    Access(access::AccessCommand),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = match (
        cli.tls_ca.clone(),
        cli.tls_cert.is_some() || cli.tls_key.is_some(),
    ) {
        (None, false) => None,
        (None, true) => {
            let why =
                "--tls-cert and --tls-key need --tls-ca (the CA bundle that verifies the nodes)";
            return Err(UsageError::new(why.to_string()).into());
        }
        (Some(ca), _) => {
            let paths = cairn_tls::TlsPaths {
                ca,
                cert: cli.tls_cert.clone(),
                key: cli.tls_key.clone(),
                crl: None,
            };
            let metrics = cairn_tls::TlsMetrics::new().context("TLS metrics")?;
            Some(
                cairn_tls::TlsContext::load(paths, metrics)
                    .map_err(|e| UsageError::new(format!("TLS: {e}")))?,
            )
        }
    };
    // Inputs are checked before any connection, so a usage error never
    // depends on a server.
    let plan = match cli.command {
        args::Command::Playground(p) => return playground::run(p).await,
        args::Command::Cluster { command } => Plan::Cluster(command),
        args::Command::Shards => Plan::Shards,
        args::Command::Node { command } => Plan::Node(command),
        args::Command::Rebalance { command } => Plan::Rebalance(command),
        command => match access::prepare(command)? {
            access::Prepared::Access(a) => Plan::Access(a),
            access::Prepared::Other(command) => Plan::Kv(request::prepare(command)?),
        },
    };
    let endpoints: Vec<String> = cli
        .endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        let why = "no endpoints given (--endpoints or CAIRN_ENDPOINTS is empty)";
        return Err(UsageError::new(why.to_string()).into());
    }
    let mut options = ClientOptions::default();
    if let Some(tls) = tls {
        options = options.tls(tls);
    }
    if let Some(token) = cli.token.filter(|t| !t.is_empty()) {
        options = options.token(token);
    }
    let client = Client::connect_with(&endpoints, options)
        .await
        .map_err(client_error)?;

    let stdout = std::io::stdout();
    let format = Format {
        json: cli.json,
        terminal: stdout.is_terminal(),
    };
    let mut out = BufWriter::new(stdout);
    match plan {
        Plan::Cluster(command) => admin::cluster(&client, command, format, &mut out).await?,
        Plan::Shards => admin::shards(&client, format, &mut out).await?,
        Plan::Node(command) => node::run(&client, command, format, &mut out).await?,
        Plan::Rebalance(command) => node::rebalance(&client, command, format, &mut out).await?,
        Plan::Kv(operation) => execute::execute(&client, operation, format, &mut out).await?,
        Plan::Access(command) => access::run(&client, command, format, &mut out).await?,
    }
    out.flush().context("writing output")
}
