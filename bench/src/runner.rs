//! Drives a target: the load phase, then the measured run.
//!
//! Every client is a task with its own connection and random generators.
//! Closed loop (no `--rate`): each client sends its next operation when the
//! previous one is answered, and latency is measured from the send.
//! Open loop (`--rate R`): operation *n* is due at `start + n / R`; the next
//! free client takes the next due operation, waits until it is due, sends
//! it, and its latency is measured from when it was *due*, so a stalled
//! server is charged for the queue it causes (coordinated-omission
//! correction). Operations due before the end that no client got to send
//! are reported as `missed_sends`. Timer granularity is 1 ms, so open-loop
//! latencies can include up to ~1 ms of wake-up delay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::cli::Plan;
use crate::distribution::KeyChooser;
use crate::histogram::report::{LoadReport, Report, RunReport, Settings};
use crate::histogram::{Outcome, Recorder};
use crate::keygen::{ValueGen, key};
use crate::progress::Progress;
use crate::sequence::InsertSequence;
use crate::targets::{Connection, Target};
use crate::workload::{OpKind, Workload};

/// Error messages printed to stderr per run (the rest are only counted).
const ERRORS_SHOWN: u64 = 5;
/// Open loop: an operation due before the end is still sent this long
/// after it (timer wake-ups are up to ~1 ms late); later ones are missed.
const TIMER_SLACK: Duration = Duration::from_millis(5);
/// Most recorder shards (clients share them round-robin).
const RECORDER_SHARDS: usize = 8;

/// Loads (unless the plan skips it) and runs the workload against `target`.
pub async fn benchmark<T: Target>(target: T, plan: &Plan) -> anyhow::Result<Report> {
    let mut conns = Vec::with_capacity(plan.clients);
    for worker in 0..plan.clients {
        conns.push(
            target
                .connection(worker)
                .await
                .with_context(|| format!("opening connection {worker}"))?,
        );
    }
    let values = ValueGen::new(plan.value_size, &mut SmallRng::seed_from_u64(plan.seed));
    let load = if plan.load {
        let (report, back) = load(conns, plan, &values).await?;
        conns = back;
        eprintln!(
            "cairn-bench: loaded {} records in {:.1} s ({:.0} records/s)",
            report.records, report.seconds, report.throughput
        );
        Some(report)
    } else {
        None
    };
    let run = run(conns, plan, &values).await;
    Ok(Report {
        settings: settings(plan),
        load,
        run,
    })
}

/// The parameters echoed in the report.
pub fn settings(plan: &Plan) -> Settings {
    Settings {
        target: plan.target.name().to_string(),
        endpoints: plan.connect.endpoints.clone(),
        workload: plan.workload.name.name().to_string(),
        distribution: plan.distribution.name().to_string(),
        records: plan.records,
        value_size: plan.value_size,
        clients: plan.clients,
        warmup_s: plan.warmup.as_secs_f64(),
        duration_s: plan.duration.as_secs_f64(),
        target_rate: plan.rate,
        serializable: plan.connect.serializable,
        coordinated_omission_corrected: plan.rate.is_some(),
    }
}

/// Inserts records `0..plan.records` with every client; gives the
/// connections back for the run. Any failed insert fails the load.
async fn load<C: Connection>(
    conns: Vec<C>,
    plan: &Plan,
    values: &ValueGen,
) -> anyhow::Result<(LoadReport, Vec<C>)> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(
        "load",
        done.clone(),
        Some(plan.records),
        None,
        Progress::wanted(),
    );
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for (worker, mut conn) in conns.into_iter().enumerate() {
        let (next, done, failed) = (next.clone(), done.clone(), failed.clone());
        let values = values.clone();
        let (records, timeout) = (plan.records, plan.op_timeout);
        let mut rng = SmallRng::seed_from_u64(
            plan.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        tasks.push(tokio::spawn(async move {
            let result: anyhow::Result<()> = async {
                while !failed.load(Ordering::Relaxed) {
                    let record = next.fetch_add(1, Ordering::Relaxed);
                    if record >= records {
                        break;
                    }
                    let k = key(record);
                    match tokio::time::timeout(timeout, conn.insert(&k, values.value(&mut rng)))
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            return Err(e.context(format!("inserting record {record} ({k})")));
                        }
                        Err(_) => {
                            bail!("inserting record {record} ({k}) timed out after {timeout:?}")
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            .await;
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            (conn, result)
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for t in tasks {
        let (conn, result) = t.await.context("load task panicked")?;
        conns.push(conn);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    progress.finish();
    if let Some(e) = first_error {
        return Err(e.context("load phase failed"));
    }
    Ok((LoadReport::new(plan.records, started.elapsed()), conns))
}

/// State shared by the run's clients.
struct Shared {
    workload: Workload,
    inserts: InsertSequence,
    values: ValueGen,
    recorders: Vec<Mutex<Recorder>>,
    /// Open loop: next operation number to send.
    tickets: AtomicU64,
    /// Open loop: operations due in the measured window that were sent.
    sent_in_window: AtomicU64,
    /// Operations finished (for progress).
    finished: Arc<AtomicU64>,
    errors_shown: AtomicU64,
    rate: Option<f64>,
    op_timeout: Duration,
    start: Instant,
    measure_from: Instant,
    deadline: Instant,
}

/// Per-client state.
struct Client<C> {
    conn: C,
    rng: SmallRng,
    chooser: KeyChooser,
    shard: usize,
}

/// Runs the workload with every client until the deadline.
async fn run<C: Connection>(conns: Vec<C>, plan: &Plan, values: &ValueGen) -> RunReport {
    let chooser = KeyChooser::new(plan.distribution, plan.records);
    let shards = conns.len().clamp(1, RECORDER_SHARDS);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        workload: plan.workload,
        inserts: InsertSequence::new(plan.records),
        values: values.clone(),
        recorders: (0..shards).map(|_| Mutex::new(Recorder::new())).collect(),
        tickets: AtomicU64::new(0),
        sent_in_window: AtomicU64::new(0),
        finished: Arc::new(AtomicU64::new(0)),
        errors_shown: AtomicU64::new(0),
        rate: plan.rate,
        op_timeout: plan.op_timeout,
        start,
        measure_from: start + plan.warmup,
        deadline: start + plan.warmup + plan.duration,
    });
    let progress = Progress::start(
        "run",
        shared.finished.clone(),
        None,
        Some(plan.warmup + plan.duration),
        Progress::wanted(),
    );
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(worker, conn)| {
            let client = Client {
                conn,
                rng: SmallRng::seed_from_u64(
                    plan.seed.rotate_left(17)
                        ^ (worker as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93),
                ),
                chooser: chooser.clone(),
                shard: worker % shards,
            };
            tokio::spawn(client_loop(client, shared.clone()))
        })
        .collect();
    for t in tasks {
        // A panicking client loses only its own in-flight operation.
        let _ = t.await;
    }
    let ended = Instant::now();
    progress.finish();
    let mut total = Recorder::new();
    for r in &shared.recorders {
        total.merge(&r.lock().unwrap_or_else(|e| e.into_inner()));
    }
    let missed = plan.rate.map(|r| {
        let due = |d: Duration| (d.as_secs_f64() * r).ceil() as u64;
        let scheduled = due(plan.warmup + plan.duration) - due(plan.warmup);
        scheduled.saturating_sub(shared.sent_in_window.load(Ordering::Relaxed))
    });
    // Measured window: from the end of the warm-up until the last client
    // stopped (in-flight operations finish after the deadline).
    let elapsed = ended.saturating_duration_since(shared.measure_from);
    RunReport::new(&total, elapsed, missed)
}

async fn client_loop<C: Connection>(mut c: Client<C>, s: Arc<Shared>) {
    loop {
        let due = match s.rate {
            None => {
                let now = Instant::now();
                if now >= s.deadline {
                    break;
                }
                now
            }
            Some(rate) => {
                let ticket = s.tickets.fetch_add(1, Ordering::Relaxed);
                let due = s.start + Duration::from_secs_f64(ticket as f64 / rate);
                if due >= s.deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                if Instant::now() >= s.deadline + TIMER_SLACK {
                    // Due in time, but this client was busy until the end.
                    break;
                }
                if due >= s.measure_from {
                    s.sent_in_window.fetch_add(1, Ordering::Relaxed);
                }
                due
            }
        };
        let kind = s.workload.next_op(&mut c.rng);
        let outcome = execute(&mut c, &s, kind).await;
        let latency = due.elapsed();
        if due >= s.measure_from {
            let mut r = s.recorders[c.shard]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            r.record(kind, latency, outcome);
        }
        s.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs one operation of `kind`; timeouts and errors become [`Outcome::Error`].
async fn execute<C: Connection>(c: &mut Client<C>, s: &Shared, kind: OpKind) -> Outcome {
    let t = s.op_timeout;
    let result: anyhow::Result<Outcome> = match kind {
        OpKind::Insert => {
            // Acknowledged whatever happens, or a failure would stall reads
            // of newer records forever.
            let record = s.inserts.next();
            let value = s.values.value(&mut c.rng);
            let r = timed(t, c.conn.insert(&key(record), value)).await;
            s.inserts.acknowledge(record);
            r.map(|()| Outcome::Ok)
        }
        OpKind::Read => {
            let k = key(c.chooser.next(&mut c.rng, s.inserts.acknowledged()));
            timed(t, c.conn.read(&k)).await.map(found)
        }
        OpKind::Update => {
            let k = key(c.chooser.next(&mut c.rng, s.inserts.acknowledged()));
            let value = s.values.value(&mut c.rng);
            timed(t, c.conn.update(&k, value))
                .await
                .map(|()| Outcome::Ok)
        }
        OpKind::Scan => {
            let k = key(c.chooser.next(&mut c.rng, s.inserts.acknowledged()));
            let len = s.workload.scan_length(&mut c.rng);
            timed(t, c.conn.scan(&k, len)).await.map(|_| Outcome::Ok)
        }
        OpKind::ReadModifyWrite => {
            let k = key(c.chooser.next(&mut c.rng, s.inserts.acknowledged()));
            let value = s.values.value(&mut c.rng);
            let conn = &mut c.conn;
            timed(t, async move {
                let existed = conn.read(&k).await?;
                conn.update(&k, value).await?;
                Ok(found(existed))
            })
            .await
        }
    };
    match result {
        Ok(o) => o,
        Err(e) => {
            if s.errors_shown.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
                eprintln!("cairn-bench: {} failed: {e:#}", kind.name());
            }
            Outcome::Error
        }
    }
}

fn found(existed: bool) -> Outcome {
    if existed {
        Outcome::Ok
    } else {
        Outcome::NotFound
    }
}

async fn timed<T>(
    limit: Duration,
    f: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => bail!("timed out after {limit:?}"),
    }
}
