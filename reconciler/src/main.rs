//! The `gitvps` binary: parses the command line and maps errors to exit codes.
//! All the work is in the `gitvps` library (`cli` and below).

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITVPS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,gitvps::apply=info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = gitvps::cli::Cli::parse();
    match gitvps::cli::run(cli) {
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
