//! `cairn-bench`: see `cairn-bench --help` and docs/BENCHMARKS.md.

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_bench::cli::{Args, Plan};
use cairn_bench::histogram::report::Report;
use cairn_bench::runner::benchmark;
use cairn_bench::targets::TargetKind;
use cairn_bench::targets::cairn::CairnTarget;
use cairn_bench::targets::etcd::EtcdTarget;
use cairn_bench::targets::http::HttpTarget;
use cairn_bench::targets::redis::RedisTarget;
use clap::{CommandFactory as _, Parser as _};

fn main() -> ExitCode {
    // Usage errors exit with status 2 (clap's convention, kept for ours).
    let args = Args::parse();
    let plan = args.plan().unwrap_or_else(|msg| {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit()
    });
    if args.serializable && plan.target == TargetKind::Redis {
        eprintln!("cairn-bench: --serializable has no meaning for redis; ignored");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-bench: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&plan)) {
        Ok(report) => finish(&plan, &report),
        Err(e) => {
            eprintln!("cairn-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let c = &plan.connect;
    match plan.target {
        TargetKind::Cairn => benchmark(CairnTarget::connect(c).await?, plan).await,
        TargetKind::CairnHttp => benchmark(HttpTarget::connect(c).await?, plan).await,
        TargetKind::Etcd => benchmark(EtcdTarget::connect(c).await?, plan).await,
        TargetKind::Redis => benchmark(RedisTarget::connect(c).await?, plan).await,
    }
    .with_context(|| {
        format!(
            "benchmarking {} at {}",
            plan.target.name(),
            c.endpoints.join(",")
        )
    })
}

/// Prints the report; exit 1 when too many operations failed or none succeeded.
fn finish(plan: &Plan, report: &Report) -> ExitCode {
    if plan.json {
        match serde_json::to_string_pretty(report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cairn-bench: encoding the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.run.ops == 0 {
        eprintln!("cairn-bench: no operation succeeded");
        return ExitCode::FAILURE;
    }
    let ratio = report.error_ratio();
    if ratio > plan.max_error_ratio {
        eprintln!(
            "cairn-bench: {} of {} operations failed ({:.2}% > --max-error-ratio {})",
            report.run.errors,
            report.run.ops + report.run.errors,
            ratio * 100.0,
            plan.max_error_ratio
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
