//! The revision of a pod template: a stable hash of its JSON form. Pods
//! carry it in a label (`controller-revision-hash` for StatefulSets,
//! `pod-template-hash` for Deployments); a pod whose label differs was made
//! from an older template.

use serde::Serialize;

/// Ten hex digits of the xxh3 hash of `template`'s JSON — the hash the
/// operator uses for its pod-spec hash too (not the std hasher, whose output
/// may change between Rust releases; a stable value makes logs comparable).
pub fn template_hash<T: Serialize>(template: &T) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    format!(
        "{:010x}",
        xxhash_rust::xxh3::xxh3_64(&json) & 0xff_ffff_ffff
    )
}
