//! Boot media for the tests: a tiny bootable ISO built here, and a loopback HTTP server that
//! serves bytes as a node fetches an ISO.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the marker ISO's GRUB prints on the serial console.
pub const ISO_MARKER: &str = "GITVPS-ISO-BOOTED";

/// Builds in `dir` a bootable ISO (`grub-mkrescue`, BIOS and EFI) whose GRUB prints
/// [`ISO_MARKER`] on the serial port, then waits.
pub fn marker_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("isoroot/boot/grub");
    std::fs::create_dir_all(&tree).expect("ISO tree");
    std::fs::write(
        tree.join("grub.cfg"),
        format!(
            "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n\
             echo {ISO_MARKER}\nsleep 600\n"
        ),
    )
    .expect("grub.cfg");
    let iso = dir.join("x.iso");
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(dir.join("isoroot"))
        .output()
        .expect("grub-mkrescue (scripts/deps install test installs it)");
    assert!(
        out.status.success(),
        "grub-mkrescue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    iso
}

/// Serves `body` at every path over HTTP on loopback, one connection after another, for the
/// life of the test process; returns the base URL (`http://127.0.0.1:PORT`).
pub fn serve_bytes(body: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", l.local_addr().expect("local address"));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let Ok(read) = c.try_clone() else { continue };
            let mut r = BufReader::new(read);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        }
    });
    base
}

/// The sha256 of `bytes`, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Debian 12 disk image with cloud-init (qcow2, one ext4 filesystem that boots its own
/// kernel), built by `tests/support/cloud-image.sh` with debootstrap from this machine's apt
/// mirror, and cached under the target folder (`cloud-image/`) by the script's sha256:
/// minutes cold, nothing warm.
#[allow(clippy::print_stderr)] // the build time, for the test log
pub fn cloud_image() -> PathBuf {
    let script_path = crate::top().join("tests/support/cloud-image.sh");
    let script = std::fs::read(&script_path).expect("tests/support/cloud-image.sh");
    let dir = crate::target_tmp()
        .parent()
        .expect("target folder")
        .join("cloud-image");
    std::fs::create_dir_all(&dir).expect("cloud image cache");
    let image = dir.join(format!(
        "debian-12-cloudinit-{}.qcow2",
        &sha256_hex(&script)[..16]
    ));
    if image.is_file() {
        return image;
    }
    let t = std::time::Instant::now();
    let out = Command::new("sh")
        .arg(&script_path)
        .arg(crate::mirror())
        .arg(&image)
        .output()
        .expect("sh tests/support/cloud-image.sh");
    assert!(
        out.status.success() && image.is_file(),
        "building the cloud image failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "cloud image (debootstrap with cloud-init) built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    image
}
