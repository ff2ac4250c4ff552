//! Failure reports: a field-level diff of two decoded frames and hexdumps
//! with the differing bytes marked.

use std::fmt::Write as _;

use super::decode::{decode, Decoded};

/// Hexdump of `b`, 16 bytes a line; with `other`, a marker line under each
/// line shows the bytes that differ from it (or are missing in it).
pub fn hexdump(b: &[u8], other: Option<&[u8]>) -> String {
    let mut s = String::new();
    for (i, line) in b.chunks(16).enumerate() {
        let _ = write!(s, "  {:04x} ", i * 16);
        let mut marks = String::new();
        let mut any = false;
        for (j, x) in line.iter().enumerate() {
            let _ = write!(s, " {x:02x}");
            let at = i * 16 + j;
            let differs = other.is_some_and(|o| o.get(at) != Some(x));
            any |= differs;
            marks.push_str(if differs { " ^^" } else { "   " });
        }
        s.push('\n');
        if any {
            let _ = writeln!(s, "       {}", marks.trim_end());
        }
    }
    if b.is_empty() {
        s.push_str("  (empty)\n");
    }
    s
}

/// Field-by-field differences between an expected and a got decode.
pub fn field_diff(exp: &Decoded, got: &Decoded) -> Vec<String> {
    let mut names: Vec<&str> = exp.fields.iter().map(|(n, _)| n.as_str()).collect();
    for (n, _) in &got.fields {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for n in names {
        let (e, g) = (exp.field(n), got.field(n));
        if e != g {
            out.push(format!(
                "  {n}: expected {}, got {}",
                e.unwrap_or("(absent)"),
                g.unwrap_or("(absent)")
            ));
        }
    }
    out
}

/// The first offset at which two byte strings differ.
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// A full failure report: what, field diff, problems, hexdumps.
pub fn report(what: &str, input: &[u8], expected: Option<&[u8]>, got: &[u8]) -> String {
    let mut s = format!("{what}\n");
    let dg = decode(got);
    if let Some(e) = expected {
        let de = decode(e);
        let fd = field_diff(&de, &dg);
        let _ = writeln!(
            s,
            "field differences (expected vs got){}:",
            if fd.is_empty() {
                " — none in headers; bytes differ"
            } else {
                ""
            }
        );
        for l in fd {
            let _ = writeln!(s, "{l}");
        }
        if let Some(at) = first_diff(e, got) {
            let _ = writeln!(
                s,
                "first differing byte at offset {at} (expected {} bytes, got {})",
                e.len(),
                got.len()
            );
        }
    }
    if !dg.problems.is_empty() {
        let _ = writeln!(s, "problems in the output:");
        for p in &dg.problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    let _ = writeln!(
        s,
        "input ({} bytes):\n{}",
        input.len(),
        hexdump(input, None)
    );
    if let Some(e) = expected {
        let _ = writeln!(s, "expected ({} bytes):\n{}", e.len(), hexdump(e, None));
    }
    let _ = writeln!(
        s,
        "got ({} bytes, ^^ = differs from {}):\n{}",
        got.len(),
        if expected.is_some() {
            "expected"
        } else {
            "input"
        },
        hexdump(got, Some(expected.unwrap_or(input)))
    );
    s
}
