//! `switchboard`: the one binary. Each subcommand arrives with the issue that
//! makes it real; configuration comes from flags and `SWITCHBOARD_*`
//! environment variables, and a bad value stops the program with one clear
//! line before anything starts.

mod config;
mod dev;
mod edge;
mod eventstore;
mod gateway_cmd;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: an open, self-hosted contact center for WhatsApp",
    long_about = "Switchboard routes WhatsApp conversations to human agents. It runs as \
                  event-sourced services on NATS JetStream with an EventStoreDB-compatible \
                  event log.\n\nStart everything on one machine with `switchboard dev`."
)]
struct Cli {
    #[command(flatten)]
    log: telemetry::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: NATS (started if none answers), the
    /// JetStream stream, and every component built so far.
    Dev(dev::DevArgs),
    /// Run the embedded EventStoreDB-compatible event store (HTTP API on
    /// 127.0.0.1:2113 by default, log under `<data dir>/eventstore/`).
    Eventstore(eventstore::EventStoreArgs),
    /// Run one service as its own process: agent-presence, wrap-up,
    /// conversation or routing (commands over NATS, state in the event store).
    Serve(serve::ServeArgs),
    /// Print a gateway token (JWT, HS256) for an agent or a supervisor.
    Token(gateway_cmd::TokenArgs),
    /// Simulate outside parties, e.g. a customer writing on WhatsApp.
    #[command(subcommand)]
    Simulate(edge::SimulateCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return config::exit_on_clap_error(e),
    };
    telemetry::init(&cli.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Eventstore(args) => eventstore::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Simulate(command) => edge::simulate(command).await,
            Command::Token(args) => gateway_cmd::token(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line for the operator; the cause chain follows on the same line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
