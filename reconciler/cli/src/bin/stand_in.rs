//! `gitvps-stand-in --root ROOT TOOL ARGS...`: the simulation's stand-in tools (`xl`, `lvs`,
//! `lvcreate`, ...) as a small program of their own, so a call costs what a small tool costs.
//!
//! The wrapper scripts `gitvps node-sim install` writes run it where it was built beside
//! `gitvps` (`sim::nodesim::StandIn`); it links the stand-ins alone, not the whole command line,
//! whose dynamic loader took most of a stand-in call's CPU. Same tools, output and exit codes as
//! `gitvps node-sim exec`.

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (out, err) = (std::io::stdout(), std::io::stderr());
    match args.as_slice() {
        [flag, root, tool, rest @ ..] if flag == "--root" => {
            let code = sim::nodesim::run_tool(
                std::path::Path::new(root),
                tool,
                rest,
                &mut out.lock(),
                &mut err.lock(),
            );
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        _ => {
            let _ = writeln!(
                err.lock(),
                "usage: gitvps-stand-in --root ROOT TOOL [ARGS...]"
            );
            ExitCode::from(2)
        }
    }
}
