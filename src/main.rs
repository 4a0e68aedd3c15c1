//! The `coresponse-gateway` command.

use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    coresponse_gateway::cli::run().await
}
