//! The `coresponse-gateway` command.

use std::process::ExitCode;

/// mimalloc: the gateway allocates and frees many small buffers per request (TLS records,
/// JSON, rows, ciphertexts) on several threads; glibc's allocator spent a tenth of a
/// disclosure's CPU time there under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    coresponse_gateway::cli::run().await
}
