//! Local clusters of real `cairn-node` processes on one machine.
//!
//! The one launcher of Cairn: `cairnctl playground` runs a cluster through
//! it for people trying Cairn out, and the test harness (`cairn-testkit`,
//! the chaos suite, the benchmarks) starts its clusters with it, so what a
//! user tries is what the tests exercise. [`process`] runs one node as a
//! child process (start, wait for its ready line, stop with SIGTERM or
//! SIGKILL, restart on the same data); [`cluster`] starts a bootstrapping
//! node and joiners and waits until the cluster has settled.
//!
//! Errors are `anyhow`: this crate is support for binaries and tests, whose
//! callers report a failure rather than branch on it.

pub mod cluster;
pub mod process;
