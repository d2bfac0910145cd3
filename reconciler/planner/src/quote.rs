//! Shell quoting: the one function in the workspace that turns a word into POSIX sh.
//! Every word of every node script goes through it, whatever validated it before.

/// Quotes a word for POSIX sh: `'...'` with embedded quotes escaped.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@,+%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting() {
        assert_eq!(quote("xen02"), "xen02");
        assert_eq!(quote("/dev/vg0/xen02"), "/dev/vg0/xen02");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("x'; rm -rf / #"), r"'x'\''; rm -rf / #'");
        assert_eq!(quote("$(id)"), "'$(id)'");
    }
}
