//! The `gitvps` command line: clap glue over the model, the planner, the executor and the
//! hooks; one file per subcommand in `cli/`. See `ARCHITECTURE.md` for the data flow.

pub mod cli;
pub mod forge;
pub mod graphs;
pub mod site;
pub mod table;

use clap::Parser;

/// The whole `gitvps` process: logs set up from `GITVPS_LOG`, the command line parsed and run,
/// an error printed with its causes and mapped to exit code 1.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITVPS_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,executor::apply=info,gitvps::cli::monitor=info",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::from(1)
        }
    }
}
