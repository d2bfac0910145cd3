//! Stand-in for `useradd`: records accounts in ROOT/etc/passwd instead of the machine's,
//! with shadow-utils' messages and exit codes (9: the user exists; 2: bad usage).

use std::io::Write;

use super::error::{FileOp, OnFile, Result};
use super::state::Node;

/// `useradd [--system] [--home-dir DIR] [--no-create-home] [--shell SHELL] NAME`.
pub(crate) fn useradd(node: &Node, args: &[String], err: &mut dyn Write) -> Result<i32> {
    let _lock = node.lock()?;
    let (mut home, mut shell, mut name) = (None, "/bin/sh".to_owned(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-r" | "--system" | "-M" | "--no-create-home" => {}
            "-d" | "--home-dir" => home = it.next().cloned(),
            "-s" | "--shell" => shell = it.next().cloned().unwrap_or_default(),
            s if s.starts_with('-') => {
                say!(err, "useradd: unrecognized option '{s}'");
                return Ok(2);
            }
            s => name = Some(s.to_owned()),
        }
    }
    let Some(name) = name else {
        say!(err, "Usage: useradd [options] LOGIN");
        return Ok(2);
    };
    let etc = node.root().join("etc");
    std::fs::create_dir_all(&etc).on(FileOp::Create, &etc)?;
    let passwd = etc.join("passwd");
    let text = std::fs::read_to_string(&passwd).unwrap_or_default();
    if text
        .lines()
        .any(|l| l.split(':').next() == Some(name.as_str()))
    {
        say!(err, "useradd: user '{name}' already exists");
        return Ok(9);
    }
    let uid = 900 + text.lines().count();
    let home = home.unwrap_or_else(|| format!("/home/{name}"));
    let line = format!("{name}:x:{uid}:{uid}::{home}:{shell}\n");
    let tmp = etc.join(".passwd.tmp");
    std::fs::write(&tmp, text + &line).on(FileOp::Write, &tmp)?;
    std::fs::rename(&tmp, passwd).on(FileOp::Rename, &tmp)?;
    Ok(0)
}
