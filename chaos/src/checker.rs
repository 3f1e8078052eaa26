//! The linearizability checker: the Wing–Gong search with Lowe's
//! memoisation (the algorithm of Knossos and porcupine), run per key — a
//! key-value history is linearizable exactly when each key's sub-history
//! is (P-compositionality), and per-key searches are small.
//!
//! Operations with an unknown outcome get a return time of "never": they may
//! be placed anywhere after their call, and the search succeeds once every
//! operation with a known outcome is placed, so an unplaced one simply never
//! took effect.
//!
//! `SERIALIZABLE` reads are checked against a weaker rule (sequential
//! consistency per key): such a read through the smart client (a session)
//! may return any state current at some point after the call of the same
//! client's previous read of that key, up to its own return; one sent to a
//! random node's HTTP gateway carries no session, so it may return any
//! state current before its return (a partitioned node serves its last
//! state). It is searched like any read, with its call time moved back to
//! that point. A read sent with `min_revision` (a revision the client
//! already holds: its own last write to the key or the newest `mod_revision`
//! it saw) may not return a state older than that revision: what it returns
//! must carry a `mod_revision` of at least that revision, and an absent key
//! is only allowed when the answering replica had reached it.
//!
//! The memo holds (set of placed operations, state) pairs; the set is kept
//! as a 128-bit Zobrist hash (random per operation, XORed), so a memo entry
//! costs 32 bytes however long the history is. A collision could only make
//! the search skip a branch, and at 128 bits it is never expected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::{Consistency, History, Input, Nanos, Operation, Output, Via};
use crate::model::{State, Step, Values, apply};

/// Search steps allowed per key before the verdict is "inconclusive".
pub const DEFAULT_BUDGET: u64 = 50_000_000;

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked (with a known or unknown outcome).
    pub ops: usize,
    /// Keys whose search ran out of budget (neither proven nor refuted).
    pub inconclusive: Vec<String>,
    /// Keys whose history is not linearizable, each with its explanation.
    pub violations: Vec<Violation>,
}

impl Report {
    /// `linearizable`, `VIOLATION` or `inconclusive`.
    pub fn verdict(&self) -> &'static str {
        if !self.violations.is_empty() {
            "VIOLATION"
        } else if !self.inconclusive.is_empty() {
            "inconclusive"
        } else {
            "linearizable"
        }
    }
}

/// One key's failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// What is wrong, as a readable table of the shortest failing prefix.
    pub explanation: String,
    /// The operations of that prefix.
    pub ops: Vec<Operation>,
}

/// Checks a history.
pub fn check(history: &History) -> Report {
    check_with_budget(history, DEFAULT_BUDGET)
}

/// Checks a history, with `budget` search steps per key.
pub fn check_with_budget(history: &History, budget: u64) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut report = Report {
        keys: by_key.len(),
        ops: history.len(),
        inconclusive: Vec::new(),
        violations: Vec::new(),
    };
    for (key, ops) in by_key {
        let mut ops: Vec<Operation> = ops.into_iter().cloned().collect();
        ops.sort_by_key(|o| (o.call, o.ret));
        if let Some(v) = min_revision_violation(key, &ops) {
            report.violations.push(v);
            continue;
        }
        match check_key(&ops, budget) {
            Outcome::Linearizable => {}
            Outcome::OutOfBudget => report.inconclusive.push(key.to_string()),
            Outcome::Fails { .. } => report.violations.push(explain(key, &ops, budget)),
        }
    }
    report
}

/// The `min_revision` guarantee, checked directly: a read that found the
/// key reports a `mod_revision` no older than the revision it asked for.
fn min_revision_violation(key: &str, ops: &[Operation]) -> Option<Violation> {
    let bad = ops.iter().find(|o| match (&o.input, &o.output) {
        (
            Input::Get { min_revision, .. },
            Output::Read {
                found: Some(_),
                mod_revision,
                header_revision,
            },
        ) => *min_revision > 0 && (mod_revision < min_revision || header_revision < min_revision),
        (
            Input::Get { min_revision, .. },
            Output::Read {
                found: None,
                header_revision,
                ..
            },
        ) => *min_revision > 0 && *header_revision > 0 && header_revision < min_revision,
        _ => false,
    })?;
    let mut values = Values::default();
    Some(Violation {
        key: key.to_string(),
        explanation: format!(
            "a read with min_revision returned older data:\n{}",
            describe(bad, 0, &mut values)
        ),
        ops: vec![bad.clone()],
    })
}

/// A search outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Linearizable,
    OutOfBudget,
    /// Not linearizable; the longest order found that explains a prefix.
    Fails {
        best: Vec<usize>,
    },
}

/// A key's operations prepared for the search.
struct Prepared {
    steps: Vec<Step>,
    calls: Vec<Nanos>,
    /// `Nanos::MAX` for an unknown outcome.
    rets: Vec<Nanos>,
    /// Index into the key's operations.
    origin: Vec<usize>,
    values: Values,
}

/// Prepares `ops` (sorted by call), as if the run had stopped at `cut`:
/// operations called later are left out, operations still running then
/// have an unknown outcome.
fn prepare(ops: &[Operation], cut: Nanos) -> Prepared {
    let mut p = Prepared {
        steps: Vec::new(),
        calls: Vec::new(),
        rets: Vec::new(),
        origin: Vec::new(),
        values: Values::default(),
    };
    // Per client: the call time of its previous read of this key, and the
    // call time of its writes by the revision they reported.
    let mut last_read: HashMap<u32, Nanos> = HashMap::new();
    let mut write_calls: HashMap<(u32, u64), Nanos> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if op.call > cut {
            continue;
        }
        let unknown_output;
        let output = if op.ret > cut && !op.is_indeterminate() {
            unknown_output = Output::Unknown {
                error: "still running at the cut".into(),
            };
            &unknown_output
        } else {
            &op.output
        };
        let Some(step) = p.values.step(&op.input, output) else {
            continue;
        };
        let ret = if matches!(output, Output::Unknown { .. }) {
            Nanos::MAX
        } else {
            op.ret
        };
        let mut call = op.call;
        if let Input::Get {
            consistency: Consistency::Serializable,
            min_revision,
        } = &op.input
        {
            // Only the smart client is a session; a request to some node's
            // HTTP gateway carries nothing of the client's earlier reads.
            call = match op.via {
                Via::Grpc => last_read.get(&op.client).copied().unwrap_or(0),
                Via::Http => 0,
            };
            if let Some(w) = write_calls.get(&(op.client, *min_revision)) {
                call = call.max(*w);
            }
        }
        if let (Input::Get { .. }, Via::Grpc) = (&op.input, op.via) {
            // A stale serializable read may itself sit before its call, so
            // the next one is bounded by where this one could sit.
            last_read.insert(op.client, call);
        }
        if let Output::Written { revision, .. } = &op.output {
            write_calls.insert((op.client, *revision), op.call);
        }
        p.steps.push(step);
        p.calls.push(call);
        p.rets.push(ret);
        p.origin.push(i);
    }
    p
}

fn check_key(ops: &[Operation], budget: u64) -> Outcome {
    let p = prepare(ops, Nanos::MAX);
    search(&p, budget)
}

/// The Wing–Gong search over a doubly linked list of call and return
/// events, with the memo of visited (placed set, state) pairs.
fn search(p: &Prepared, budget: u64) -> Outcome {
    let n = p.steps.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Events: (time, is_return, op). Calls sort before returns at equal
    // times (the lenient reading of a tie).
    let mut events: Vec<(Nanos, bool, usize)> = Vec::with_capacity(2 * n);
    for i in 0..n {
        events.push((p.calls[i], false, i));
        events.push((p.rets[i], true, i));
    }
    events.sort_unstable();
    // Node 0 is the head sentinel; node k+1 is events[k]; NIL = usize::MAX.
    const NIL: usize = usize::MAX;
    let len = events.len() + 1;
    let mut next = vec![NIL; len];
    let mut prev = vec![NIL; len];
    let mut call_node = vec![0; n];
    let mut ret_node = vec![0; n];
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        let node = k + 1;
        prev[node] = node - 1;
        next[node - 1] = node;
        if is_ret {
            ret_node[op] = node;
        } else {
            call_node[op] = node;
        }
    }
    let event_of = |node: usize| events[node - 1];
    let zobrist: Vec<u128> = {
        let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        (0..n)
            .map(|_| {
                // xorshift128: deterministic, well spread.
                x ^= x << 23;
                x ^= x >> 17;
                x ^= x << 26;
                x
            })
            .collect()
    };
    let mut remaining = p.rets.iter().filter(|r| **r != Nanos::MAX).count();
    let mut placed: u128 = 0;
    let mut state: State = None;
    let mut memo: HashSet<(u128, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut steps: u64 = 0;
    let mut entry = next[0];

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (a, b) = (prev[node], next[node]);
        next[a] = b;
        if b != NIL {
            prev[b] = a;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (a, b) = (prev[node], next[node]);
        next[a] = node;
        if b != NIL {
            prev[b] = node;
        }
    };

    loop {
        if remaining == 0 {
            return Outcome::Linearizable;
        }
        steps += 1;
        if steps > budget {
            return Outcome::OutOfBudget;
        }
        if entry == NIL {
            // Cannot happen while a known return is still in the list.
            return Outcome::Fails { best };
        }
        let (_, is_ret, op) = event_of(entry);
        if !is_ret {
            if let Some(after) = apply(state, &p.steps[op]) {
                let key = (placed ^ zobrist[op], after);
                if memo.insert(key) {
                    stack.push((op, state));
                    state = after;
                    placed ^= zobrist[op];
                    if p.rets[op] != Nanos::MAX {
                        remaining -= 1;
                    }
                    lift(&mut next, &mut prev, call_node[op]);
                    lift(&mut next, &mut prev, ret_node[op]);
                    if stack.len() > best.len() {
                        best = stack.iter().map(|(o, _)| *o).collect();
                    }
                    entry = next[0];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return reached with its operation unplaced: undo the last
            // placement and try the next candidate after it.
            if p.rets[op] == Nanos::MAX {
                // Unknown operations' returns sort after every known one:
                // all known ones are placed, the rest never took effect.
                return Outcome::Linearizable;
            }
            loop {
                let Some((last, before)) = stack.pop() else {
                    return Outcome::Fails { best };
                };
                let left_state_alone = before == state;
                state = before;
                placed ^= zobrist[last];
                if p.rets[last] != Nanos::MAX {
                    remaining += 1;
                }
                unlift(&mut next, &mut prev, ret_node[last]);
                unlift(&mut next, &mut prev, call_node[last]);
                if !left_state_alone {
                    entry = next[call_node[last]];
                    break;
                }
                // An operation that left the state as it was (a read, a
                // refused condition, a delete of an absent key) only
                // dropped its own constraint by being placed here: any
                // linearization that places it later can place it here
                // instead. Its subtree failed, so every alternative at
                // this point fails too: undo the placement before it.
                // (Without this, wide SERIALIZABLE reads multiply the
                // search by the subsets of them placed.)
            }
        }
    }
}

/// Finds the shortest failing prefix (the earliest cut at which the history
/// is already not linearizable) and describes it.
fn explain(key: &str, ops: &[Operation], budget: u64) -> Violation {
    let mut cuts: Vec<Nanos> = ops
        .iter()
        .filter(|o| !o.is_indeterminate())
        .map(|o| o.ret)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let fails = |cut: Nanos| matches!(search(&prepare(ops, cut), budget), Outcome::Fails { .. });
    // Failing is monotone in the cut: the smallest failing cut is found by
    // bisection; the whole history (the last cut) fails.
    let (mut lo, mut hi) = (0usize, cuts.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(cuts[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let cut = cuts.get(lo).copied().unwrap_or(Nanos::MAX);
    let mut p = prepare(ops, cut);
    let best = match search(&p, budget) {
        Outcome::Fails { best } => best,
        _ => Vec::new(),
    };
    let mut state: State = None;
    for &i in &best {
        state = apply(state, &p.steps[i]).unwrap_or(state);
    }
    let placed: HashSet<usize> = best.iter().map(|i| p.origin[*i]).collect();
    let prefix: Vec<&Operation> = ops.iter().filter(|o| o.call <= cut).collect();
    let culprit = ops
        .iter()
        .position(|o| o.ret == cut && !o.is_indeterminate());
    // Show the operations around the failure: those still open when the
    // last explained operation was placed, and everything after it.
    let shown_from = prefix.len().saturating_sub(24);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "key {key:?}: no order of these operations explains what the clients saw.\n\
         The shortest failing prefix ends when the operation marked >> returned; \
         {} of its {} operations can be ordered, leaving the key {}, and then nothing fits.\n\
         (* = placed in that longest order; times in ms since the start)",
        best.len(),
        p.steps.len(),
        p.values.show(state)
    );
    let values = &mut p.values;
    for (i, op) in ops.iter().enumerate().filter(|(_, o)| o.call <= cut) {
        if prefix
            .iter()
            .position(|o| std::ptr::eq(*o, op))
            .unwrap_or(0)
            < shown_from
        {
            continue;
        }
        let mark = if Some(i) == culprit {
            ">>"
        } else if placed.contains(&i) {
            " *"
        } else {
            "  "
        };
        let _ = writeln!(text, "{mark} {}", describe(op, cut, values));
    }
    Violation {
        key: key.to_string(),
        explanation: text,
        ops: prefix.into_iter().cloned().collect(),
    }
}

/// One operation as a readable line.
fn describe(op: &Operation, cut: Nanos, values: &mut Values) -> String {
    let input = match &op.input {
        Input::Put { value } => format!("put({value})"),
        Input::PutIfAbsent { value } => format!("put_if_absent({value})"),
        Input::PutIfValue { expect, value } => format!("put_if_value({expect} -> {value})"),
        Input::Update { value } => format!("update({value})"),
        Input::Delete => "delete".into(),
        Input::Get {
            consistency,
            min_revision,
        } => match (consistency, min_revision) {
            (Consistency::Linearizable, _) => "get".into(),
            (Consistency::Serializable, 0) => "get(serializable)".into(),
            (Consistency::Serializable, r) => format!("get(serializable, min_revision={r})"),
        },
        Input::CompareAndSet { expect, value } => format!("txn(if {expect} then {value})"),
    };
    let output = match &op.output {
        _ if op.ret > cut && !op.is_indeterminate() => "(still running)".into(),
        Output::Written { version, revision } => format!("ok v{version} rev {revision}"),
        Output::Refused { code } => format!("refused {code}"),
        Output::Deleted { existed } => format!("deleted existed={existed}"),
        Output::Read {
            found,
            mod_revision,
            ..
        } => {
            let s = found.as_ref().map(|s| (values.intern(&s.value), s.version));
            if found.is_some() {
                format!("{} mod_rev {mod_revision}", values.show(s))
            } else {
                values.show(s)
            }
        }
        Output::Unknown { error } => format!("unknown ({error})"),
    };
    let ms = |t: Nanos| t as f64 / 1e6;
    let ret = if op.is_indeterminate() {
        "never".to_string()
    } else {
        format!("{:.3}", ms(op.ret))
    };
    format!(
        "c{:<3} {:<5} {:<48} -> {:<36} call {:>10.3} ret {:>10}",
        op.client,
        format!("{:?}", op.via).to_lowercase(),
        input,
        output,
        ms(op.call),
        ret
    )
}

#[cfg(test)]
mod tests;
