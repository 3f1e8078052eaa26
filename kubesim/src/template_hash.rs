//! The revision of a pod template: a stable hash of its JSON form. Pods
//! carry it in a label (`controller-revision-hash` for StatefulSets,
//! `pod-template-hash` for Deployments); a pod whose label differs was made
//! from an older template.

use serde::Serialize;

/// Ten hex digits of the FNV-1a hash of `template`'s JSON (not the std
/// hasher, whose output may change between Rust releases; a stable value
/// makes logs comparable).
pub fn template_hash<T: Serialize>(template: &T) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}
