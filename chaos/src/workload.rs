//! The clients: each runs one operation at a time on a small set of keys,
//! through the smart gRPC client or the HTTP gateway of a random node, and
//! records the call, the outcome and the return.
//!
//! Every write carries a unique value; conditional writes expect the last
//! value the client read. A condition failure (`key_exists`,
//! `revision_mismatch`, `key_not_found`) is a known outcome; any other
//! error on a write is unknown (the write may still apply), and a failed
//! read is recorded as unknown and constrains nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_proto::kv::v1 as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{Consistency, History, Input, Nanos, Operation, Output, Stored, Via};

/// How long one operation may take before its outcome counts as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(4);

/// How long a write with an unknown outcome is retried under its request id
/// before it is recorded as indeterminate.
pub const RESOLVE_WITHIN: Duration = Duration::from_secs(20);

/// The pause between such retries.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The shared, append-only record of a run.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<History>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    fn push(&self, op: Operation) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }

    /// Everything recorded, in call order.
    pub fn history(&self) -> History {
        let mut h = self.ops.lock().map(|o| o.clone()).unwrap_or_default();
        h.sort_by_key(|o| o.call);
        h
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// What one client knows of a key: the last value it read (and the
/// revision it was written at), and the revision of its own last write.
#[derive(Default, Clone)]
struct Seen {
    value: Option<(String, u64)>,
    own_write_revision: u64,
}

/// One client's endpoints.
pub struct Endpoints {
    /// The smart client (all nodes as seeds).
    pub grpc: Client,
    /// HTTP gateway base URLs (`http://IP:PORT`) of every node.
    pub http: Vec<String>,
}

/// One client.
pub struct Worker {
    id: u32,
    keys: Vec<String>,
    rng: StdRng,
    seen: HashMap<String, Seen>,
    seq: u64,
    http: reqwest::Client,
}

impl Worker {
    /// Client `id` on `keys`, its choices drawn from `seed`.
    pub fn new(id: u32, keys: Vec<String>, seed: u64) -> Self {
        let http = reqwest::Client::builder()
            .timeout(OP_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            id,
            keys,
            rng: StdRng::seed_from_u64(seed ^ (u64::from(id) << 32)),
            seen: HashMap::new(),
            seq: 0,
            http,
        }
    }

    fn next_value(&mut self) -> String {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq)
    }

    /// Picks the next operation on a random key.
    fn pick(&mut self) -> (String, Input) {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        let seen = self.seen.get(&key).cloned().unwrap_or_default();
        let roll = self.rng.random_range(0..100);
        let input = match roll {
            0..=19 => Input::Get {
                consistency: Consistency::Linearizable,
                min_revision: 0,
            },
            20..=29 => Input::Get {
                consistency: Consistency::Serializable,
                // Half carry a session token: the newest revision this
                // client knows the key at (its own write, or what it read).
                min_revision: if self.rng.random_bool(0.5) {
                    seen.own_write_revision
                        .max(seen.value.as_ref().map_or(0, |(_, r)| *r))
                } else {
                    0
                },
            },
            30..=49 => Input::Put {
                value: self.next_value(),
            },
            50..=54 => Input::PutIfAbsent {
                value: self.next_value(),
            },
            55..=66 => match seen.value {
                Some((expect, _)) => Input::PutIfValue {
                    expect,
                    value: self.next_value(),
                },
                None => Input::PutIfAbsent {
                    value: self.next_value(),
                },
            },
            67..=74 => Input::Update {
                value: self.next_value(),
            },
            75..=81 => Input::Delete,
            _ => match seen.value {
                Some((expect, _)) => Input::CompareAndSet {
                    expect,
                    value: self.next_value(),
                },
                None => Input::Get {
                    consistency: Consistency::Linearizable,
                    min_revision: 0,
                },
            },
        };
        (key, input)
    }

    /// Runs operations until `stop` is set; returns how many it ran.
    pub async fn run(
        mut self,
        endpoints: Arc<Endpoints>,
        recorder: Recorder,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> u64 {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let (key, input) = self.pick();
            // Compare-and-set exists only as a gRPC Txn.
            let via = if matches!(input, Input::CompareAndSet { .. }) || self.rng.random_bool(0.6) {
                Via::Grpc
            } else {
                Via::Http
            };
            let node = self.rng.random_range(0..endpoints.http.len());
            self.execute(&endpoints, node, &recorder, key, input, via)
                .await;
            n += 1;
        }
        n
    }

    /// Runs one operation and records it.
    pub async fn execute(
        &mut self,
        endpoints: &Endpoints,
        node: usize,
        recorder: &Recorder,
        key: String,
        input: Input,
        via: Via,
    ) -> Output {
        let call = recorder.now();
        let started = Instant::now();
        // One request id for every attempt: a write whose outcome is unknown
        // is sent again under it (to another node, over HTTP) until an
        // answer is definite, as a careful application would; the node's
        // exactly-once rule makes the retries one operation, which the
        // checker verifies (a double apply shows in the version count).
        let request_id = rand::random::<u128>().to_be_bytes();
        let mut node = node;
        let output = loop {
            let fut = async {
                match via {
                    Via::Grpc => grpc(&endpoints.grpc, &key, &input, &self.seen, &request_id).await,
                    Via::Http => {
                        http(
                            &self.http,
                            &endpoints.http[node],
                            &key,
                            &input,
                            &self.seen,
                            &request_id,
                        )
                        .await
                    }
                }
            };
            let output = match tokio::time::timeout(OP_TIMEOUT, fut).await {
                Ok(o) => o,
                Err(_) => Output::Unknown {
                    error: format!("no answer within {}s", OP_TIMEOUT.as_secs()),
                },
            };
            if !matches!(output, Output::Unknown { .. })
                || !input.is_write()
                || started.elapsed() >= RESOLVE_WITHIN
            {
                break output;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
            if via == Via::Http {
                node = self.rng.random_range(0..endpoints.http.len());
            }
        };
        let ret = recorder.now();
        let seen = self.seen.entry(key.clone()).or_default();
        match &output {
            Output::Read {
                found,
                mod_revision,
                ..
            } => {
                seen.value = found.as_ref().map(|s| (s.value.clone(), *mod_revision));
            }
            Output::Written { revision, .. } => seen.own_write_revision = *revision,
            _ => {}
        }
        recorder.push(Operation {
            client: self.id,
            key,
            input,
            output: output.clone(),
            call,
            ret,
            via,
        });
        output
    }
}

fn unknown(e: impl std::fmt::Display) -> Output {
    Output::Unknown {
        error: e.to_string(),
    }
}

/// The codes that mean "the condition did not hold; nothing applied".
fn is_refusal(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("key_exists" | "revision_mismatch" | "key_not_found")
    )
}

fn stored(kv: &pb::KeyValue) -> Stored {
    Stored {
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        version: kv.version,
    }
}

fn read_output(kv: Option<&pb::KeyValue>, header: Option<&pb::ResponseHeader>) -> Output {
    Output::Read {
        found: kv.map(stored),
        mod_revision: kv.map_or(0, |k| k.mod_revision),
        header_revision: header.map_or(0, |h| h.revision),
    }
}

fn written(kv: Option<&pb::KeyValue>, header: Option<&pb::ResponseHeader>) -> Output {
    Output::Written {
        version: kv.map_or(0, |k| k.version),
        revision: header.map_or(0, |h| h.revision),
    }
}

fn expected_revision(seen: &HashMap<String, Seen>, key: &str, expect: &str) -> u64 {
    seen.get(key)
        .and_then(|s| s.value.as_ref())
        .filter(|(v, _)| v == expect)
        .map_or(0, |(_, r)| *r)
}

async fn grpc(
    client: &Client,
    key: &str,
    input: &Input,
    seen: &HashMap<String, Seen>,
    request_id: &[u8],
) -> Output {
    let k = key.as_bytes().to_vec();
    let write_result = |r: Result<Output, cairn_client::ClientError>| match r {
        Ok(o) => o,
        Err(e) if is_refusal(e.error_code()) => Output::Refused {
            code: e.error_code().unwrap_or_default().to_string(),
        },
        Err(e) => unknown(e),
    };
    match input {
        Input::Get {
            consistency,
            min_revision,
        } => {
            let read = pb::ReadOptions {
                consistency: match consistency {
                    Consistency::Linearizable => pb::Consistency::Linearizable,
                    Consistency::Serializable => pb::Consistency::Serializable,
                } as i32,
                min_revision: *min_revision,
            };
            match client.get(k, read).await {
                Ok(r) => read_output(r.kv.as_ref(), r.header.as_ref()),
                Err(e) => unknown(e),
            }
        }
        Input::Put { value } | Input::PutIfAbsent { value } | Input::PutIfValue { value, .. } => {
            let mut req = pb::PutRequest {
                key: k,
                value: value.clone().into_bytes(),
                request_id: request_id.to_vec(),
                ..Default::default()
            };
            match input {
                Input::PutIfAbsent { .. } => req.if_absent = true,
                Input::PutIfValue { expect, .. } => {
                    req.if_mod_revision = Some(expected_revision(seen, key, expect));
                }
                _ => {}
            }
            write_result(
                client
                    .put(req)
                    .await
                    .map(|r| written(r.kv.as_ref(), r.header.as_ref())),
            )
        }
        Input::Update { value } => write_result(
            client
                .update(pb::UpdateRequest {
                    key: k,
                    value: value.clone().into_bytes(),
                    request_id: request_id.to_vec(),
                    ..Default::default()
                })
                .await
                .map(|r| written(r.kv.as_ref(), r.header.as_ref())),
        ),
        Input::Delete => write_result(
            client
                .delete(pb::DeleteRequest {
                    key: k,
                    request_id: request_id.to_vec(),
                    ..Default::default()
                })
                .await
                .map(|r| Output::Deleted { existed: r.existed }),
        ),
        Input::CompareAndSet { expect, value } => {
            let req = pb::TxnRequest {
                compares: vec![pb::Compare {
                    key: k.clone(),
                    target: pb::compare::Target::Value as i32,
                    op: pb::compare::Op::Equal as i32,
                    value: expect.clone().into_bytes(),
                    number: 0,
                }],
                success: vec![pb::TxnOp {
                    op: Some(pb::txn_op::Op::Put(pb::PutRequest {
                        key: k.clone(),
                        value: value.clone().into_bytes(),
                        ..Default::default()
                    })),
                }],
                failure: vec![pb::TxnOp {
                    op: Some(pb::txn_op::Op::Get(pb::GetRequest { key: k, read: None })),
                }],
                request_id: request_id.to_vec(),
            };
            match client.txn(req).await {
                Ok(r) => {
                    let first = r.results.first().and_then(|x| x.result.as_ref());
                    match (r.succeeded, first) {
                        (true, Some(pb::txn_op_result::Result::Put(p))) => {
                            written(p.kv.as_ref(), r.header.as_ref())
                        }
                        (false, Some(pb::txn_op_result::Result::Get(g))) => {
                            read_output(g.kv.as_ref(), r.header.as_ref())
                        }
                        other => unknown(format!("unexpected txn response {other:?}")),
                    }
                }
                Err(e) => unknown(e),
            }
        }
    }
}

/// The HTTP gateway's error body.
#[derive(serde::Deserialize)]
struct HttpErrorBody {
    code: String,
}

/// The HTTP gateway's write response.
#[derive(serde::Deserialize)]
struct HttpWritten {
    revision: u64,
    version: u64,
}

fn header_u64(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn http(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    input: &Input,
    seen: &HashMap<String, Seen>,
    request_id: &[u8],
) -> Output {
    let url = format!("{base}/store/{key}");
    let idempotency: String = request_id.iter().map(|b| format!("{b:02x}")).collect();
    let request = match input {
        Input::Get {
            consistency,
            min_revision,
        } => {
            let c = match consistency {
                Consistency::Linearizable => "linearizable",
                Consistency::Serializable => "serializable",
            };
            http.get(&url)
                .query(&[("consistency", c.to_string())])
                .query(&[("min_revision", min_revision.to_string())])
        }
        Input::Put { value } => http.put(&url).body(value.clone()),
        Input::PutIfAbsent { value } => http
            .put(&url)
            .query(&[("if_absent", "true")])
            .body(value.clone()),
        Input::PutIfValue { expect, value } => http
            .put(&url)
            .header(
                "if-match",
                format!("\"{}\"", expected_revision(seen, key, expect)),
            )
            .body(value.clone()),
        Input::Update { value } => http.patch(&url).body(value.clone()),
        Input::Delete => http.delete(&url),
        Input::CompareAndSet { .. } => return unknown("compare-and-set is gRPC only"),
    };
    let request = if input.is_write() {
        request.header("idempotency-key", idempotency)
    } else {
        request
    };
    let resp = match request.send().await {
        Ok(r) => r,
        Err(e) => return unknown(e),
    };
    let status = resp.status();
    if status.is_success() {
        return match input {
            Input::Get { .. } => {
                let version = header_u64(&resp, "x-cairn-version");
                let mod_revision = header_u64(&resp, "x-cairn-mod-revision");
                let header_revision = header_u64(&resp, "x-cairn-revision");
                match resp.bytes().await {
                    Ok(body) => Output::Read {
                        found: Some(Stored {
                            value: String::from_utf8_lossy(&body).into_owned(),
                            version,
                        }),
                        mod_revision,
                        header_revision,
                    },
                    Err(e) => unknown(e),
                }
            }
            Input::Delete => Output::Deleted { existed: true },
            _ => match resp.json::<HttpWritten>().await {
                Ok(w) => Output::Written {
                    version: w.version,
                    revision: w.revision,
                },
                Err(e) => unknown(e),
            },
        };
    }
    let header_revision = header_u64(&resp, "x-cairn-revision");
    let code = resp
        .json::<HttpErrorBody>()
        .await
        .map(|b| b.code)
        .unwrap_or_default();
    match (input, code.as_str()) {
        (Input::Get { .. }, "key_not_found") => Output::Read {
            found: None,
            mod_revision: 0,
            header_revision,
        },
        (Input::Delete, "key_not_found") => Output::Deleted { existed: false },
        (_, c) if input.is_write() && is_refusal(Some(c)) => Output::Refused {
            code: c.to_string(),
        },
        (_, c) => unknown(format!("HTTP {status} {c}")),
    }
}
