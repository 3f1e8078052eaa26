//! The command line: flags, their defaults, and checks that make a [`Plan`].

use std::time::Duration;

use clap::Parser;

use crate::distribution::DistributionKind;
use crate::targets::{TargetKind, TargetOptions};
use crate::workload::{Workload, WorkloadName};

/// Largest value accepted (well above any target's limit; a typo guard).
const MAX_VALUE_SIZE: usize = 64 << 20;

/// YCSB core workloads (A–F) against Cairn, etcd or Redis.
///
/// Loads `--records` records, then runs the workload for `--warmup` (not
/// measured) plus `--duration` with `--clients` concurrent in-flight
/// requests, and reports throughput and latency percentiles per operation.
/// With `--rate` the load is open-loop: operations are scheduled at that
/// rate and latency is measured from each one's scheduled send time
/// (coordinated-omission correction). Exit status: 0 ok, 1 failure, 2 usage.
#[derive(Debug, Clone, Parser)]
#[command(name = "cairn-bench", version)]
pub struct Args {
    /// System to drive.
    #[arg(long, value_enum)]
    pub target: TargetKind,
    /// HOST:PORT of every server, comma-separated [default: the target's usual loopback port].
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Core workload.
    #[arg(long, value_enum, default_value = "a")]
    pub workload: WorkloadName,
    /// Records loaded before the run (and the key space of the run).
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Request distribution [default: the workload's; latest for D, zipfian otherwise].
    #[arg(long, value_enum)]
    pub distribution: Option<DistributionKind>,
    /// Concurrent in-flight requests (one task each).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured run time (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured run time before the measurement.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open-loop target rate in operations per second (all clients together).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Serializable (local, possibly stale) reads instead of linearizable (cairn, cairn-http, etcd).
    #[arg(long)]
    pub serializable: bool,
    /// Speak TLS to Cairn (`cairn` target), trusting this CA bundle (PEM).
    #[arg(long, value_name = "F")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Bearer token for a Cairn cluster with authentication on (`cairn`
    /// target): a session token from `cairnctl login` or an API token.
    #[arg(long, value_name = "T", env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the load phase (the records are already there from an earlier run).
    #[arg(long)]
    pub skip_load: bool,
    /// Deadline of one operation; a late one counts as an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// Clients sharing one HTTP/2 connection (cairn, etcd).
    #[arg(long, default_value_t = 32)]
    pub clients_per_connection: usize,
    /// Fail (exit 1) when more than this share of measured operations failed.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// Seed of the random generators (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A validated benchmark: what to run and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which system.
    pub target: TargetKind,
    /// How to connect.
    pub connect: TargetOptions,
    /// Workload definition.
    pub workload: Workload,
    /// Request distribution.
    pub distribution: DistributionKind,
    /// Records in the store.
    pub records: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before it.
    pub warmup: Duration,
    /// Open-loop rate, if any.
    pub rate: Option<f64>,
    /// Run the load phase.
    pub load: bool,
    /// Deadline of one operation.
    pub op_timeout: Duration,
    /// Failure threshold.
    pub max_error_ratio: f64,
    /// Random seed.
    pub seed: u64,
    /// Print JSON.
    pub json: bool,
}

impl Args {
    /// Checks the flags together and makes the plan; the error is a usage
    /// message.
    pub fn plan(&self) -> Result<Plan, String> {
        if self.records == 0 {
            return Err("--records must be at least 1".into());
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.value_size == 0 || self.value_size > MAX_VALUE_SIZE {
            return Err(format!("--value-size must be 1..={MAX_VALUE_SIZE}"));
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if self.op_timeout.is_zero() {
            return Err("--op-timeout must be positive".into());
        }
        if self.clients_per_connection == 0 {
            return Err("--clients-per-connection must be at least 1".into());
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(format!(
                "--rate must be a positive number of operations per second, not {r}"
            ));
        }
        if !(0.0..=1.0).contains(&self.max_error_ratio) {
            return Err("--max-error-ratio must be within 0..=1".into());
        }
        let endpoints = if self.endpoints.is_empty() {
            vec![self.target.default_endpoint().to_string()]
        } else {
            self.endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .collect()
        };
        for e in &endpoints {
            let port_ok = e
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!("endpoint {e:?} is not HOST:PORT"));
            }
        }
        let workload = Workload::core(self.workload);
        Ok(Plan {
            target: self.target,
            connect: TargetOptions {
                endpoints,
                clients: self.clients,
                clients_per_connection: self.clients_per_connection,
                serializable: self.serializable,
                op_timeout: self.op_timeout,
                tls_ca: self.tls_ca.clone(),
                token: self.token.clone(),
            },
            workload,
            distribution: self.distribution.unwrap_or(workload.default_distribution),
            records: self.records,
            value_size: self.value_size,
            clients: self.clients,
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            load: !self.skip_load,
            op_timeout: self.op_timeout,
            max_error_ratio: self.max_error_ratio,
            seed: self.seed.unwrap_or_else(rand::random),
            json: self.json,
        })
    }
}

/// Parses a duration flag in Cairn's one grammar (Go's: `30s`, `500ms`,
/// `1.5s`, `1m30s`; a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    cairn_client::duration::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["cairn-bench", "--target", "cairn"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn defaults_make_a_plan() {
        let p = args(&[]).unwrap().plan().unwrap();
        assert_eq!(p.connect.endpoints, ["127.0.0.1:7000"]);
        assert_eq!(p.workload.name, WorkloadName::A);
        assert_eq!(p.distribution, DistributionKind::Zipfian);
        assert!(p.load);
        assert!(p.rate.is_none());
    }

    #[test]
    fn workload_d_defaults_to_latest_unless_overridden() {
        let p = args(&["--workload", "d"]).unwrap().plan().unwrap();
        assert_eq!(p.distribution, DistributionKind::Latest);
        let p = args(&["--workload", "d", "--distribution", "uniform"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(p.distribution, DistributionKind::Uniform);
    }

    #[test]
    fn full_contract_parses() {
        let a = args(&[
            "--endpoints",
            "127.0.0.1:1,127.0.0.1:2",
            "--workload",
            "e",
            "--records",
            "10",
            "--value-size",
            "8",
            "--clients",
            "3",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--rate",
            "100",
            "--distribution",
            "latest",
            "--serializable",
            "--json",
        ])
        .unwrap();
        let p = a.plan().unwrap();
        assert_eq!(p.connect.endpoints.len(), 2);
        assert_eq!(p.rate, Some(100.0));
        assert!(p.connect.serializable && p.json);
        assert_eq!(
            (p.duration, p.warmup),
            (Duration::from_secs(2), Duration::from_secs(1))
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(
            Args::try_parse_from(["cairn-bench"]).is_err(),
            "--target is required"
        );
        assert!(Args::try_parse_from(["cairn-bench", "--target", "mysql"]).is_err());
        assert!(args(&["--workload", "g"]).is_err());
        for bad in [
            &["--records", "0"][..],
            &["--clients", "0"],
            &["--value-size", "0"],
            &["--duration", "0s"],
            &["--rate", "0"],
            &["--rate=-5"],
            &["--endpoints", "localhost"],
            &["--endpoints", "127.0.0.1:99999"],
        ] {
            let parsed = args(bad).unwrap();
            assert!(parsed.plan().is_err(), "{bad:?} should be refused");
        }
    }
}
