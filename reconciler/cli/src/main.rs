//! The `gitvps` binary: everything is in the `gitvps` library ([`gitvps::main`]).

fn main() -> std::process::ExitCode {
    gitvps::main()
}
