//! The audit log: one JSON line per admin or access-control call and per
//! denied request (who, what, which keys or ranges, the result), to a file
//! (appended; rotation is left to the platform: reopen on SIGHUP is not
//! needed because each line is one `write` to an `O_APPEND` file, so
//! `copytruncate`-style rotation works) or to stderr.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_auth::Need;
use cairn_auth::model::shown;
use serde::Serialize;

/// Where audit lines go.
#[derive(Clone)]
pub struct AuditLog {
    sink: Arc<Mutex<Box<dyn std::io::Write + Send>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// One audited event.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// Unix ms.
    pub ts_ms: u64,
    /// The node that checked the request.
    pub node: u64,
    /// Who (a user name, `node N`, or empty when unauthenticated).
    pub principal: &'a str,
    /// How they proved it (`session_token`, `api_token`, `certificate`,
    /// `forwarded`, `node_certificate`, or `none`).
    pub credential: &'a str,
    /// The call (`KV/Put`, `DrainNode`, …).
    pub call: &'a str,
    /// `grpc` or `http`.
    pub api: &'a str,
    /// The client's address, when known.
    pub remote: Option<String>,
    /// What the call needed: keys, ranges and admin permissions (at most
    /// [`MAX_AUDITED_NEEDS`]).
    pub needs: Vec<String>,
    /// `allowed` or `denied`.
    pub result: &'a str,
    /// Why it was denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Most needs one audit line lists.
pub const MAX_AUDITED_NEEDS: usize = 32;

/// A need as the audit log writes it.
pub fn describe(need: &Need) -> String {
    match need {
        Need::Key(p, k) => format!("{} {}", p.as_str(), shown(k)),
        Need::Range(p, r) => format!("{} {r}", p.as_str()),
        Need::Admin(a) => format!("admin {}", a.as_str()),
        Need::Authenticated => "authenticated".into(),
        Need::Peer => "peer".into(),
        Need::Nothing => "nothing".into(),
    }
}

impl AuditLog {
    /// Lines to stderr.
    pub fn stderr() -> Self {
        Self {
            sink: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
        }
    }

    /// Lines appended to `path` (created if missing).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            sink: Arc::new(Mutex::new(Box::new(f))),
        })
    }

    /// Writes one event. A failing sink is logged, never fails the request.
    pub fn record(&self, event: &AuditEvent<'_>) {
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "audit event does not serialise");
                return;
            }
        };
        line.push(b'\n');
        let mut sink = match self.sink.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
            tracing::error!(error = %e, "writing the audit log failed");
        }
    }
}
