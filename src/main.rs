//! The `callgenius` binary: parse the command line, build the application, run until stopped.
//!
//! `extract-document` (the engine's own child process for reading uploads) runs before any
//! runtime or logging is set up, so that the child is one thread doing one thing.

use anyhow::Context;
use clap::Parser;

use callgenius::app::Application;
use callgenius::cli::{Cli, Command};
use callgenius::{commands, config::Config, knowledge, telemetry};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::ExtractDocument = cli.command {
        return knowledge::sandbox::child_main().context("extracting a document");
    }
    telemetry::init_tracing(std::io::stderr);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = Config::load(args.into_overrides()).context("loading configuration")?;
            let app = Application::build(config)
                .await
                .context("starting the engine")?;
            app.run_until_stopped(telemetry::shutdown_signal()).await
        }
        Command::Transcribe(args) => commands::transcribe(args),
        Command::Speak(args) => commands::speak(args),
        Command::Call(args) => commands::call(args).await,
        Command::Bench(args) => commands::bench(args).await,
        // Reached only through `main`'s early return; kept for an exhaustive match.
        Command::ExtractDocument => {
            knowledge::sandbox::child_main().context("extracting a document")
        }
    }
}
