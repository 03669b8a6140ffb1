use clap::Parser;
use latchkey_server::cli::{self, Cli};

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
