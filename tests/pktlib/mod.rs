//! Test-side packet library: a builder (etherparse + raw TCP/MPTCP option
//! bytes), an independent decoder and checksum verifier, and diff/hexdump
//! failure reports. Shared by the packet tests; no BPF here.

pub mod build;
pub mod decode;
pub mod diff;
pub mod opts;

/// Offsets of the checksum fields of a frame (IPv4 header, TCP).
fn csum_fields(b: &[u8]) -> Vec<usize> {
    let d = decode::decode(b);
    let mut v = Vec::new();
    if let Some(t) = &d.tcp {
        if !t.v6 {
            v.push(t.l3_off + 10);
        }
        v.push(t.l4_off + 16);
    }
    v
}

/// Compares an output frame with the expected one. Checksum fields may
/// differ only as the two one's complement zeros (0x0000 / 0xffff).
/// Returns a full report on mismatch.
pub fn compare(what: &str, input: &[u8], expected: &[u8], got: &[u8]) -> Result<(), String> {
    if got == expected {
        return Ok(());
    }
    if got.len() == expected.len() {
        let fields = csum_fields(expected);
        let ok = (0..got.len()).filter(|&i| got[i] != expected[i]).all(|i| {
            fields.iter().any(|&f| {
                (i == f || i == f + 1) && {
                    let e = [expected[f], expected[f + 1]];
                    let g = [got[f], got[f + 1]];
                    matches!((e, g), ([0, 0], [0xff, 0xff]) | ([0xff, 0xff], [0, 0]))
                }
            })
        });
        if ok {
            return Ok(());
        }
    }
    Err(diff::report(what, input, Some(expected), got))
}

/// Checks that a frame is a fully consistent TCP packet (lengths, data
/// offset, checksums, options) by our decoder and etherparse.
pub fn consistent(what: &str, input: &[u8], got: &[u8]) -> Result<(), String> {
    match decode::verify_tcp(got) {
        Ok(_) => Ok(()),
        Err(p) => Err(format!(
            "{}inconsistencies:\n  - {}\n",
            diff::report(what, input, None, got),
            p.join("\n  - ")
        )),
    }
}
