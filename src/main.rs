//! The `callgenius` binary: parse the command line, build the application, run until stopped.

use anyhow::Context;
use clap::Parser;

use callgenius::app::Application;
use callgenius::cli::{Cli, Command};
use callgenius::{commands, config::Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing(std::io::stderr);
    match cli.command {
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
    }
}
