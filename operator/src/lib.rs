//! Kubernetes operator for Cairn.
//!
//! This first increment holds the pieces a controller is built from, all of
//! them pure and tested without a cluster:
//! - [`crd`]: the `KVCluster` custom resource and its admission rules;
//! - [`topology`]: how nodes spread over racks and which node id each pod runs;
//! - [`builders`]: the Kubernetes objects the operator applies for a
//!   `KVCluster` (StatefulSets, Services, PodDisruptionBudget, ConfigMap).
//!
//! The reconcile loop that applies them is not written yet.

#![deny(clippy::unwrap_used, missing_docs)]

pub mod builders;
pub mod crd;
pub mod topology;

pub use builders::{BuildError, OwnedObjects, build_owned_objects};
pub use crd::{KVCluster, KVClusterSpec, KVClusterStatus};
