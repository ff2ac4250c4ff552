//! User-supplied text as emptcp's messages show it: escaped and capped.
//!
//! Everything an error echoes from a policy file or the command line
//! (chain, device and namespace names, kinds, keys, values, file paths)
//! goes through here, so that a hostile value can neither forge lines nor
//! reorder a terminal's text (control characters, bidi overrides such as
//! U+202E become `\u{202e}`) nor flood it (a 10 MB name shows as its first
//! 64 characters and `…`).

use std::fmt::{self, Write};
use std::path::Path;

/// At most this many characters of a value (escaped) are shown, then `…`.
pub const SHOWN_MAX: usize = 64;

/// A value in double quotes, like `{:?}` of a `str`, escaped and capped.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a str);

/// A value without quotes (paths, keys in backticks), escaped and capped.
#[derive(Debug, Clone, Copy)]
pub struct Bare<'a>(&'a str);

/// `s` in double quotes, escaped and capped.
pub fn quoted(s: &str) -> Quoted<'_> {
    Quoted(s)
}

/// `s` without quotes, escaped and capped.
pub fn bare(s: &str) -> Bare<'_> {
    Bare(s)
}

/// A path as messages show it: lossy UTF-8, escaped and capped, no quotes.
pub fn path(p: &Path) -> String {
    bare(&p.to_string_lossy()).to_string()
}

/// Writes `s` escaped like `char::escape_debug` (a single quote stays
/// as it is, as in `{:?}` of a `str`), stopping with `…` before the
/// escaped text would grow past `max` characters.
fn write_capped(f: &mut fmt::Formatter<'_>, s: &str, max: usize) -> fmt::Result {
    let mut n = 0;
    for c in s.chars() {
        let e = c.escape_debug();
        let len = if c == '\'' { 1 } else { e.len() };
        if n + len > max {
            return f.write_char('…');
        }
        n += len;
        if c == '\'' {
            f.write_char(c)?;
        } else {
            for x in e {
                f.write_char(x)?;
            }
        }
    }
    Ok(())
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write_capped(f, self.0, SHOWN_MAX)?;
        f.write_char('"')
    }
}

impl fmt::Display for Bare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_capped(f, self.0, SHOWN_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_look_like_debug() {
        for s in ["veth1", "wifi-backup", "10.1.0", "", "it's \"x\" \\ y"] {
            assert_eq!(quoted(s).to_string(), format!("{s:?}"), "{s}");
        }
        assert_eq!(bare("/tmp/p.toml").to_string(), "/tmp/p.toml");
    }

    #[test]
    fn escapes_control_and_bidi_characters() {
        assert_eq!(quoted("a\nb").to_string(), r#""a\nb""#);
        assert_eq!(quoted("a\u{1b}[2J").to_string(), r#""a\u{1b}[2J""#);
        assert_eq!(
            quoted("evil\u{202e}txt.exe").to_string(),
            r#""evil\u{202e}txt.exe""#
        );
        for c in [
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200f}', '\u{61c}',
        ] {
            let s = bare(&c.to_string()).to_string();
            assert!(s.starts_with("\\u{"), "{c:?} is escaped: {s}");
        }
        assert_eq!(bare("\0").to_string(), r"\0");
        assert_eq!(bare("tab\there").to_string(), r"tab\there");
    }

    #[test]
    fn caps_long_values() {
        let long = "a".repeat(10 << 20);
        let q = quoted(&long).to_string();
        assert_eq!(q, format!("\"{}…\"", "a".repeat(SHOWN_MAX)));
        let exact = "b".repeat(SHOWN_MAX);
        assert_eq!(bare(&exact).to_string(), exact, "64 characters: whole");
        // escapes count as what is shown, and are never cut in half
        let ctl = "\u{202e}".repeat(1000);
        let b = bare(&ctl).to_string();
        assert!(b.chars().count() <= SHOWN_MAX + 1, "{b}");
        assert!(b.ends_with("}…"), "{b}");
        assert_eq!(b.matches("\\u{202e}").count(), SHOWN_MAX / 8);
    }

    #[test]
    fn paths_are_shown_lossy_and_capped() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff\n.toml"));
        assert_eq!(path(p), "/tmp/\u{fffd}\\n.toml");
    }
}
