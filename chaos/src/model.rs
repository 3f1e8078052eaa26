//! The sequential specification of one Cairn key: a register that also
//! counts its versions, so a write applied twice (a retry that was not
//! deduplicated) or lost shows up as a version no sequential order explains.

use crate::history::{Input, Output, Stored};

/// A key's state: absent, or a value (by its index in the key's value
/// table) and the key's version.
pub type State = Option<(u32, u64)>;

/// An operation prepared for the search: values interned to small numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Put `value`; `expect`: the version the response reported (`None`:
    /// outcome unknown).
    Put {
        /// Interned value.
        value: u32,
        /// Reported version.
        version: Option<u64>,
    },
    /// A conditional write (`if_absent`, `if_mod_revision`, update,
    /// compare-and-set).
    Conditional {
        /// What must hold for it to apply.
        condition: Condition,
        /// Interned value written when it holds.
        value: u32,
        /// The outcome.
        outcome: CondOutcome,
    },
    /// Delete; `existed` as reported (`None`: unknown).
    Delete {
        /// Reported existence.
        existed: Option<bool>,
    },
    /// A read that returned this state.
    Read {
        /// What the read saw.
        saw: State,
    },
}

/// The condition of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The key is absent.
    Absent,
    /// The key is present.
    Present,
    /// The key holds this (interned) value.
    Holds(u32),
}

/// What a conditional write reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondOutcome {
    /// Applied, with this version.
    Applied(u64),
    /// The condition did not hold; nothing applied.
    Refused,
    /// The compare failed and the key was read as this state (a `Txn`'s
    /// failure branch).
    RefusedSaw(State),
    /// Unknown.
    Unknown,
}

impl Condition {
    fn holds(self, state: State) -> bool {
        match self {
            Condition::Absent => state.is_none(),
            Condition::Present => state.is_some(),
            Condition::Holds(v) => state.is_some_and(|(cur, _)| cur == v),
        }
    }
}

fn version(state: State) -> u64 {
    state.map_or(0, |(_, v)| v)
}

/// Applies `step` to `state`: the next state when the step's reported
/// outcome is possible from `state`, `None` when it is not.
pub fn apply(state: State, step: &Step) -> Option<State> {
    match *step {
        Step::Put { value, version: v } => {
            let next = version(state) + 1;
            (v.is_none() || v == Some(next)).then_some(Some((value, next)))
        }
        Step::Conditional {
            condition,
            value,
            outcome,
        } => {
            let holds = condition.holds(state);
            let next = Some((value, version(state) + 1));
            match outcome {
                CondOutcome::Applied(v) => (holds && v == version(state) + 1).then_some(next),
                CondOutcome::Refused => (!holds).then_some(state),
                CondOutcome::RefusedSaw(saw) => (!holds && saw == state).then_some(state),
                CondOutcome::Unknown => Some(if holds { next } else { state }),
            }
        }
        Step::Delete { existed } => {
            (existed.is_none() || existed == Some(state.is_some())).then_some(None)
        }
        Step::Read { saw } => (saw == state).then_some(state),
    }
}

/// Interns a key's values so states are small and cheap to hash.
#[derive(Debug, Default)]
pub struct Values {
    names: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Values {
    /// The number for `value`, adding it if new.
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(&i) = self.index.get(value) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(value.to_string());
        self.index.insert(value.to_string(), i);
        i
    }

    /// The value behind a number.
    pub fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }

    /// A state for display.
    pub fn show(&self, state: State) -> String {
        match state {
            None => "absent".into(),
            Some((v, ver)) => format!("{}@v{ver}", self.name(v)),
        }
    }

    fn stored(&mut self, s: &Option<Stored>) -> State {
        s.as_ref().map(|s| (self.intern(&s.value), s.version))
    }

    /// The search step for an operation; `None` for an operation that
    /// cannot constrain anything (a read whose outcome is unknown).
    pub fn step(&mut self, input: &Input, output: &Output) -> Option<Step> {
        let unknown = matches!(output, Output::Unknown { .. });
        let applied = match output {
            Output::Written { version, .. } => Some(*version),
            _ => None,
        };
        let cond_outcome = |refused_saw: Option<State>| match (output, refused_saw) {
            (Output::Written { version, .. }, _) => CondOutcome::Applied(*version),
            (Output::Unknown { .. }, _) => CondOutcome::Unknown,
            (_, Some(saw)) => CondOutcome::RefusedSaw(saw),
            _ => CondOutcome::Refused,
        };
        let saw = match output {
            Output::Read { found, .. } => Some(self.stored(found)),
            _ => None,
        };
        Some(match input {
            Input::Get { .. } => Step::Read { saw: saw? },
            Input::Put { value } => Step::Put {
                value: self.intern(value),
                version: if unknown { None } else { Some(applied?) },
            },
            Input::PutIfAbsent { value } => Step::Conditional {
                condition: Condition::Absent,
                value: self.intern(value),
                outcome: cond_outcome(None),
            },
            Input::Update { value } => Step::Conditional {
                condition: Condition::Present,
                value: self.intern(value),
                outcome: cond_outcome(None),
            },
            Input::PutIfValue { expect, value } => Step::Conditional {
                condition: Condition::Holds(self.intern(expect)),
                value: self.intern(value),
                outcome: cond_outcome(None),
            },
            Input::CompareAndSet { expect, value } => Step::Conditional {
                condition: Condition::Holds(self.intern(expect)),
                value: self.intern(value),
                outcome: cond_outcome(saw),
            },
            Input::Delete => Step::Delete {
                existed: match output {
                    Output::Deleted { existed } => Some(*existed),
                    _ => None,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_writes_since_creation() {
        let s = apply(
            None,
            &Step::Put {
                value: 0,
                version: Some(1),
            },
        )
        .unwrap();
        assert_eq!(s, Some((0, 1)));
        // A put that reports version 3 after one write is impossible: it
        // would mean a write applied twice.
        assert_eq!(
            apply(
                s,
                &Step::Put {
                    value: 1,
                    version: Some(3)
                }
            ),
            None
        );
        let gone = apply(
            s,
            &Step::Delete {
                existed: Some(true),
            },
        )
        .unwrap();
        assert_eq!(
            apply(
                gone,
                &Step::Put {
                    value: 2,
                    version: Some(1)
                }
            ),
            Some(Some((2, 1)))
        );
    }

    #[test]
    fn a_refused_write_needs_its_condition_false() {
        let held = Some((7, 2));
        let absent = Step::Conditional {
            condition: Condition::Absent,
            value: 1,
            outcome: CondOutcome::Refused,
        };
        assert_eq!(apply(held, &absent), Some(held));
        assert_eq!(apply(None, &absent), None);
        let unknown = Step::Conditional {
            condition: Condition::Holds(7),
            value: 1,
            outcome: CondOutcome::Unknown,
        };
        assert_eq!(apply(held, &unknown), Some(Some((1, 3))));
        assert_eq!(apply(None, &unknown), Some(None));
    }
}
