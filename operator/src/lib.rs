//! Kubernetes operator for Cairn.
//!
//! - [`crd`]: the `KVCluster` custom resource and its admission rules;
//! - [`topology`]: how nodes spread over racks and which node id each pod runs;
//! - [`builders`]: the Kubernetes objects the operator applies for a
//!   `KVCluster` (StatefulSets, Services, PodDisruptionBudget, ConfigMap);
//! - [`controller`]: the reconcile loop that applies them and drives the
//!   cluster's lifecycle (scale out and in, replacement, rolling restarts)
//!   through the Cairn admin API;
//! - [`metrics`]: the operator's own Prometheus metrics;
//! - [`health_check`]: `--check-health`, the probe the Helm chart's test runs.

pub mod builders;
pub mod controller;
pub mod crd;
pub mod health_check;
pub mod metrics;
pub mod topology;

pub use builders::{BuildError, OwnedObjects, build_owned_objects};
pub use crd::{KVCluster, KVClusterSpec, KVClusterStatus};
