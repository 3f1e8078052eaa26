//! A stand-in Kubernetes for end-to-end tests of `cairn-operator` where no
//! kube-apiserver can run. Three parts, each the counterpart of one real
//! component, talking to each other only through the HTTP API like the real
//! ones do:
//!
//! - [`apiserver`]: an in-memory API server (list, watch, status, finalizers,
//!   owner-reference garbage collection, Server-Side Apply as a merge).
//! - [`statefulset`]: the StatefulSet controller (pods and claims per ordinal).
//! - [`deployment`]: the Deployment controller (pods per template revision).
//! - [`kubelet`]: runs each pod's container as a real local process, with a
//!   pod IP on loopback, ConfigMap and claim volumes as directories, and
//!   readiness from the pod's probe.
//!
//! What is not emulated is listed in this crate's README.

pub mod apiserver;
mod controller_task;
pub mod deployment;
pub mod kubelet;
pub mod statefulset;
mod template_hash;
mod workload;
