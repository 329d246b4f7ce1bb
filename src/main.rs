//! The `ringcast` command: `serve` runs the server, `doctor` checks the host.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "io_uring thread-per-core chat edge server (WebSocket + RESP pub/sub)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ringcast::config::ServeArgs>),
    /// Check this host's kernel settings and limits against what ringcast
    /// needs, and the listeners the given config opens to a network.
    Doctor {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// The config (file and flags) as `serve` takes it.
        #[command(flatten)]
        serve: Box<ringcast::config::ServeArgs>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor { json, serve } => match ringcast::doctor::load(&serve) {
            Ok(cfg) => std::process::ExitCode::from(ringcast::doctor::run(json, &cfg) as u8),
            Err(e) => {
                eprintln!("ringcast: {e:#}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            let cfg = match ringcast::config::Config::load(&args) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("ringcast: {e:#}");
                    return std::process::ExitCode::from(2);
                }
            };
            let filter = EnvFilter::try_from_env("RINGCAST_LOG")
                .unwrap_or_else(|_| EnvFilter::new(&cfg.log));
            // Colour only where a person reads it: a log file or a pipe gets
            // plain text.
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            match ringcast::server::serve(cfg) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("ringcast: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
