//! A progress line on stderr, redrawn twice a second, only when stderr is a
//! terminal (logs and pipes get just the final summary).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(500);

/// A running progress line; [`Progress::finish`] clears it.
#[derive(Debug)]
pub struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Whether progress lines would be shown (stderr is a terminal).
    pub fn wanted() -> bool {
        std::io::stderr().is_terminal()
    }

    /// Shows `label: done[/total] (rate/s)` from `done` until finished;
    /// `total` is a count (load phase) or `None` with `until` a duration
    /// (run phase). Does nothing when `enabled` is false.
    pub fn start(
        label: &'static str,
        done: Arc<AtomicU64>,
        total: Option<u64>,
        until: Option<Duration>,
        enabled: bool,
    ) -> Self {
        if !enabled {
            return Self { task: None };
        }
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(REDRAW);
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
                let line = match (total, until) {
                    (Some(t), _) => format!(
                        "{label}: {n}/{t} ({:.0}%) {rate:.0}/s",
                        100.0 * n as f64 / t.max(1) as f64
                    ),
                    (None, Some(u)) => format!(
                        "{label}: {secs:.0}/{:.0} s, {n} ops, {rate:.0} ops/s",
                        u.as_secs_f64()
                    ),
                    (None, None) => format!("{label}: {n} ops, {rate:.0} ops/s"),
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
        });
        Self { task: Some(task) }
    }

    /// Stops redrawing and clears the line.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
