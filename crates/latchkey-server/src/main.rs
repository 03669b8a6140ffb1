use clap::Parser;
use latchkey_server::cli::{self, Cli};

/// glibc's allocator spends a sixth of a refresh's CPU under load across
/// the runtime's workers and the SQLite writer; mimalloc's per-thread heaps
/// do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let parsed = Cli::parse();
    match cli::run(parsed).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, the reason.
            let reason = format!("{e:#}").replace('\n', " ");
            eprintln!("latchkey: {reason}");
            std::process::ExitCode::FAILURE
        }
    }
}
