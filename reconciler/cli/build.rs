//! Link options for the binaries. On Linux with glibc the relative relocations are packed
//! (DT_RELR), so the loader reads 25 KB of them instead of 2.2 MB at every start.
//!
//! Packed relocations need binutils 2.38 to link and glibc 2.36 to run (Debian 12, Ubuntu
//! 24.04). `GITVPS_NO_RELR=1` at build time leaves them out, for older systems.

fn main() {
    println!("cargo:rerun-if-env-changed=GITVPS_NO_RELR");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let supported = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64");
    if supported && var("GITVPS_NO_RELR").is_empty() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
