//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`) and
//! generates tonic/prost code plus an encoded descriptor set for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/cairn/kv/v1/kv.proto",
        "proto/cairn/raft/v1/command.proto",
        "proto/cairn/raft/v1/transport.proto",
        "proto/cairn/admin/v1/admin.proto",
        "proto/cairn/auth/v1/auth.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("cairn_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
