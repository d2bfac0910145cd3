//! The `gitvps` command line exactly as shipped, built with the simulation kit (`sim`), so the
//! end-to-end tests of this package can run it as a process (`CARGO_BIN_EXE_gitvps-e2e`).

fn main() -> std::process::ExitCode {
    gitvps::main()
}
