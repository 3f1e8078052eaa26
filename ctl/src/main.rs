//! `cairnctl`: command-line client for the Cairn key-value store.
//!
//! Run `cairnctl --help` for usage. Exit status: 0 on success, 1 when the
//! operation failed, 2 on usage errors.

mod cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    cli::main().await
}
