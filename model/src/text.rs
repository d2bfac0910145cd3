//! Text that people write into the repo (names, subjects, ticket and announcement bodies):
//! the checks that keep control characters and direction tricks out of files and mails.

/// Whether a character may change how text around it reads: bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), direction marks (U+200E, U+200F,
/// U+061C) and line or paragraph separators (U+2028, U+2029). Refused in what customers write.
pub fn is_bidi_or_separator(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Checks a one-line name (customer name, company, location, ticket subject): no control
/// characters, no bidirectional overrides or separators.
pub fn check_line(s: &str, max: usize) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty()
        || t.chars().count() > max
        || t.chars().any(|c| c.is_control() || is_bidi_or_separator(c))
    {
        Err(format!("must be one line of 1 to {max} characters"))
    } else {
        Ok(t.to_owned())
    }
}

/// Checks a text of several lines (a ticket message, an announcement body): `\r\n` and `\r`
/// become `\n`, the ends are trimmed, and it must be 1 to `max_bytes` bytes with no control
/// characters but tab and newline and no bidirectional overrides or separators.
pub fn check_text(s: &str, max_bytes: usize) -> Result<String, String> {
    let t = s.replace("\r\n", "\n").replace('\r', "\n");
    let t = t.trim();
    if t.is_empty()
        || t.len() > max_bytes
        || t.chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_or_separator(c))
    {
        Err(format!(
            "must be 1 to {max_bytes} bytes of text without control characters"
        ))
    } else {
        Ok(t.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_texts() {
        assert_eq!(check_line("  hi  ", 10).unwrap(), "hi");
        assert!(check_line("a\nb", 10).is_err());
        assert!(check_line("", 10).is_err());
        assert!(check_line("x\u{202E}y", 10).is_err());
        assert!(check_line("12345678901", 10).is_err());
        assert_eq!(check_text("a\r\nb\rc\n\n", 100).unwrap(), "a\nb\nc");
        assert!(check_text(" \n ", 100).is_err());
        assert!(check_text("bell\u{7}", 100).is_err());
        assert!(check_text("x\u{2028}y", 100).is_err());
        assert!(check_text(&"x".repeat(101), 100).is_err());
        assert_eq!(
            check_text("one\n\tindented", 100).unwrap(),
            "one\n\tindented"
        );
    }
}
