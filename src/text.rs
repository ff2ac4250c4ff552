//! User-supplied text as it is echoed back in messages: escaped (control
//! characters, bidi overrides) and capped, so that a hostile name can
//! neither flood a terminal nor reorder what it shows.

/// At most this many characters of a value are echoed.
pub const SHOWN_MAX: usize = 64;

/// `s` quoted, escaped like Rust's `escape_debug`, and cut after
/// [`SHOWN_MAX`] characters (marked with `…`).
pub fn shown(s: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i == SHOWN_MAX {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_caps() {
        assert_eq!(shown("veth1"), "\"veth1\"");
        assert_eq!(shown("a\u{202e}b\n"), "\"a\\u{202e}b\\n\"");
        let long = "x".repeat(10_000_000);
        assert!(shown(&long).len() < 80);
    }
}
