//! Cairn's chaos suite: a seeded nemesis injects faults into a cluster of
//! real `cairn-node` processes while clients record every call and return;
//! the history is then checked for linearizability, key by key.
//!
//! Layers: [`history`] (what is recorded), [`model`] (one key's sequential
//! specification), [`checker`] (the search).

pub mod checker;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod network;
pub mod workload;
