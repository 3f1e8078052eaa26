//! `cairn-chaos`: seeded fault runs against real `cairn-node` processes,
//! each history checked for linearizability.
//!
//! ```text
//! cairn-chaos --seed 7 --duration 60s --nodes 3 --faults kill,pause,partition,delay,churn,disk
//! cairn-chaos --seeds 1..100 --duration 60s --nodes 3,5      # a campaign, with a summary table
//! cairn-chaos check chaos-seed-7.json                         # re-check a saved history
//! ```

mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_chaos::checker;
use cairn_chaos::history::History;
use cairn_chaos::nemesis::FaultKind;
use clap::{Parser, Subcommand};

use crate::run::{RunConfig, RunRecord};

#[derive(Parser, Debug)]
#[command(
    name = "cairn-chaos",
    about = "Seeded fault runs against a real Cairn cluster, checked for linearizability",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Re-checks a history written by a failing run (or any history JSON).
    Check {
        /// The file.
        file: PathBuf,
        /// Search steps allowed per key; raise it for a key a run reported
        /// as inconclusive (the search ran out of steps).
        #[arg(long, default_value_t = checker::DEFAULT_BUDGET)]
        budget: u64,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// One seed (the schedule and the clients' choices follow from it).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded), run one after another.
    #[arg(long)]
    seeds: Option<String>,
    /// How long the clients run under faults (e.g. 20s, 1m).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Nodes at the start; a list runs each seed once per size.
    #[arg(long, default_value = "3", value_delimiter = ',')]
    nodes: Vec<usize>,
    /// Hash shards.
    #[arg(long, default_value_t = 8)]
    shards: u32,
    /// Fault kinds (kill, pause, partition, delay, churn, disk).
    #[arg(
        long,
        default_value = "kill,pause,partition,delay,churn,disk",
        value_delimiter = ','
    )]
    faults: Vec<FaultKind>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: u32,
    /// Keys the clients share.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Size of each node's own filesystem, in MiB (the disk fault fills it).
    #[arg(long, default_value_t = 256)]
    disk_mib: u64,
    /// The cairn-node binary (default: next to this program).
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// Where failing runs' histories go.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Fail the campaign unless every kind in --faults was injected at
    /// least once (the CI smoke's coverage promise).
    #[arg(long)]
    require_every_fault: bool,
}

/// How long after its schedule a run may take (healing, recovery, final
/// reads, checking) before it counts as stuck.
const RUN_SLACK: Duration = Duration::from_secs(420);

/// Resolves on SIGINT or SIGTERM, so the caller can drop the run (which
/// kills its nodes and deletes its namespaces) before exiting.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { file, budget }) => check_file(&file, budget),
        None => campaign(cli.run),
    }
}

fn check_file(file: &Path, budget: u64) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let history: History = match serde_json::from_str::<RunRecord>(&text) {
        Ok(record) => {
            println!("recorded: {}", record.line());
            for p in &record.problems {
                println!("problem: {p}");
            }
            record.history
        }
        Err(_) => serde_json::from_str(&text)
            .with_context(|| format!("{} is neither a run record nor a history", file.display()))?,
    };
    let report = checker::check_with_budget(&history, budget);
    println!(
        "checked: keys={} ops={} budget={budget} verdict={}",
        report.keys,
        report.ops,
        report.verdict()
    );
    for v in &report.violations {
        println!("{}", v.explanation);
    }
    for key in &report.inconclusive {
        println!("inconclusive: key {key} (the search ran out of its {budget} steps)");
    }
    if !report.violations.is_empty() {
        bail!("{} keys are not linearizable", report.violations.len())
    }
    if !report.inconclusive.is_empty() {
        bail!(
            "{} keys are neither proven nor refuted; re-check with a larger --budget",
            report.inconclusive.len()
        )
    }
    Ok(())
}

fn seeds(args: &RunArgs) -> anyhow::Result<Vec<u64>> {
    if let Some(range) = &args.seeds {
        let (a, b) = range
            .split_once("..")
            .with_context(|| format!("--seeds {range:?}: expected A..B"))?;
        let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
        if a >= b {
            bail!("--seeds {range:?} is empty");
        }
        return Ok((a..b).collect());
    }
    Ok(vec![
        args.seed
            .unwrap_or_else(|| u64::from(rand::random::<u16>())),
    ])
}

fn campaign(args: RunArgs) -> anyhow::Result<()> {
    let duration = cairn_client::duration::parse(&args.duration)
        .with_context(|| format!("--duration {:?}", args.duration))?;
    if duration < Duration::from_secs(5) {
        bail!("--duration must be at least 5s");
    }
    let node_binary = match &args.node_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("program path has no directory")?
            .join("cairn-node"),
    };
    if !node_binary.exists() {
        bail!(
            "{} does not exist; build it (cargo build -p cairn-node) or pass --node-binary",
            node_binary.display()
        );
    }
    if args.nodes.iter().any(|n| *n < 3 || *n > 7) {
        bail!("--nodes must be between 3 and 7");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let mut lines = Vec::new();
    let mut failed = 0;
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut faults: BTreeMap<FaultKind, u64> = BTreeMap::new();
    let started = Instant::now();
    for seed in seeds(&args)? {
        for &nodes in &args.nodes {
            let config = RunConfig {
                seed,
                duration_s: duration.as_secs_f64(),
                nodes,
                shards: args.shards,
                faults: args.faults.clone(),
                clients: args.clients,
                keys: args.keys,
                disk_bytes: args.disk_mib << 20,
            };
            let run_started = Instant::now();
            // A run that outlives its schedule by this much is stuck
            // (every wait in it is bounded); dropping it tears the cluster
            // and its network down.
            let limit = duration + RUN_SLACK;
            let outcome = rt.block_on(async {
                tokio::select! {
                    r = tokio::time::timeout(limit, run::run(config.clone(), &node_binary)) => Some(r),
                    () = interrupted() => None,
                }
            });
            let Some(outcome) = outcome else {
                eprintln!("interrupted; the run's nodes and network were torn down");
                std::process::exit(130);
            };
            let record = match outcome {
                Ok(Ok(r)) => r,
                Err(_) => {
                    failed += 1;
                    let line = format!(
                        "seed={seed} nodes={nodes} verdict=STUCK (not finished {} s after its schedule ended; its last phase is the last `seed {seed}:` line on stderr)",
                        RUN_SLACK.as_secs()
                    );
                    println!("{line}");
                    lines.push(line);
                    continue;
                }
                Ok(Err(e)) => {
                    failed += 1;
                    let line = format!("seed={seed} nodes={nodes} verdict=ERROR ({e:#})");
                    println!("{line}");
                    lines.push(line);
                    continue;
                }
            };
            let line = record.line();
            println!("{line} ({:.0} s)", run_started.elapsed().as_secs_f64());
            for i in &record.injected {
                eprintln!("  {i}");
            }
            *totals.entry("runs").or_default() += 1;
            *totals.entry("ops").or_default() += record.history.len() as u64;
            *totals.entry("indeterminate").or_default() += record
                .history
                .iter()
                .filter(|o| o.is_indeterminate())
                .count() as u64;
            for kind in record.injected_kinds() {
                *faults.entry(kind).or_default() += 1;
            }
            if !record.clean() {
                failed += 1;
                let path = args.out.join(format!("chaos-seed-{seed}-n{nodes}.json"));
                std::fs::write(&path, serde_json::to_vec_pretty(&record)?)?;
                for v in &record.report.violations {
                    println!("{}", v.explanation);
                }
                for p in &record.problems {
                    println!("problem: {p}");
                }
                println!(
                    "history and schedule written to {}; replay with `cairn-chaos --seed {seed} --nodes {nodes} --duration {}`, re-check with `cairn-chaos check {}`",
                    path.display(),
                    args.duration,
                    path.display()
                );
            }
            lines.push(line);
        }
    }
    if lines.len() > 1 {
        println!("\nsummary ({:.0} s)", started.elapsed().as_secs_f64());
        for (k, v) in &totals {
            println!("  {k:<14} {v}");
        }
        for (k, v) in &faults {
            println!("  faults {:<8} {v}", k.name());
        }
        println!("  failed runs    {failed}");
    }
    if args.require_every_fault {
        let missing: Vec<&str> = args
            .faults
            .iter()
            .filter(|k| !faults.contains_key(k))
            .map(|k| k.name())
            .collect();
        if !missing.is_empty() {
            bail!(
                "these fault kinds were never injected: {}",
                missing.join(", ")
            );
        }
    }
    if failed > 0 {
        bail!("{failed} of {} runs failed", lines.len());
    }
    Ok(())
}
