//! Cairn's wire protocol: protobuf messages and gRPC service stubs generated
//! from `proto/`, shared by the node, the client library and the tools.

/// The gRPC metadata key that carries a Cairn error's stable code
/// (`key_exists`, `revision_mismatch`, …) beside the gRPC status: defined
/// here once, for the node that sets it and the clients that read it.
pub const ERROR_CODE_METADATA: &str = "cairn-error-code";

pub mod error_code;
pub use error_code::ErrorCode;

/// The largest gRPC message a Cairn client or node sends or accepts on the
/// KV paths (64 MiB): values may be up to 8 MiB and batches 16 MiB, and scan
/// pages and batch responses carry several of them, so tonic's 4 MiB default
/// is far too small. It also bounds `max-value-bytes`.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// `cairn.kv.v1`: the key-value API.
pub mod kv {
    /// Version 1 of the key-value API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("cairn.kv.v1");
    }
}

/// `cairn.raft.v1`: what replicated logs carry.
pub mod raft {
    /// Version 1 of the replication formats.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("cairn.raft.v1");
    }
}

/// `cairn.admin.v1`: cluster administration.
pub mod admin {
    /// Version 1 of the admin API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("cairn.admin.v1");
    }
}

/// `cairn.auth.v1`: authentication, users and roles.
pub mod auth {
    /// Version 1 of the access-control API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("cairn.auth.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Cairn proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));
