//! Checksums on the wire, read by tshark (independent of our code and of
//! the test's packet library): a set_backup chain grows the client's pure
//! ACKs on TC egress (joined subflow) while the server sends; a capture on
//! the server's end of that link must hold the MP_PRIO segments and no
//! packet with a bad IPv4 or TCP checksum. With TX checksum offload off on
//! every veth (checksums are real on the wire) and GSO on; then with TX
//! offload, TSO and GSO on (veth hands CHECKSUM_PARTIAL over unverified,
//! so there the kernel's own counters and an intact transfer are the check).
//! Needs root and tshark; otherwise prints "SKIPPED" and passes.

mod netlib;

use std::process::{Command, Stdio};
use std::time::Duration;

use netlib::*;

fn have_tshark() -> bool {
    Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn csum_scenario(fam: Family, offload: bool) {
    let bed = Testbed::new(fam);
    let onoff = if offload { "on" } else { "off" };
    for (ns, dev) in [
        (&bed.a, &bed.x1a),
        (&bed.a, &bed.x2a),
        (&bed.b, &bed.x1b),
        (&bed.b, &bed.x2b),
    ] {
        ns_run(ns, "ethtool", &["-K", dev, "tx", onoff, "gso", "on"]).expect_ok();
        if offload {
            ns_run(ns, "ethtool", &["-K", dev, "tso", "on"]).expect_ok();
        }
    }
    let pol = format!(
        "[[chain]]\nname = \"ck\"\ndev = \"{}\"\nhook = \"tc-egress\"\nnetns = \"{}\"\n\
         [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"{}\"\n\
         [[chain.act]]\nkind = \"set_backup\"\nbackup = true\nonce = false\n",
        bed.x2a,
        bed.a,
        bed.client_addr2()
    );
    let p = bed.policy("ck", &pol);
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let pcap = bed.tmp.join("x2b.pcap");
    let pcap_s = pcap.to_string_lossy().into_owned();
    let mut cap = Command::new("ip")
        .args([
            "netns", "exec", &bed.b, "tshark", "-q", "-i", &bed.x2b, "-f", "tcp",
        ])
        .args(["-a", "duration:5", "-w", &pcap_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark");
    // tshark says "Capturing on" once it listens
    let mut err = cap.stderr.take().expect("tshark stderr");
    let listening = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut seen = String::new();
        while !seen.contains("Capturing on") {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        true
    });
    assert!(listening.join().unwrap(), "tshark did not start capturing");
    let prio0 = counter(&bed.b, "MPTcpExtMPPrioRx");
    let mut t = Transfer::start_bulk(&bed, Duration::from_secs(2));
    t.wait_sent();
    let r = t.finish();
    assert!(cap.wait().expect("tshark ends").success(), "tshark failed");
    assert!(r.sent > 0 && r.received == r.sent, "transfer intact");
    assert!(counter(&bed.b, "MPTcpExtMPPrioRx") > prio0, "MPPrioRx rose");
    for ns in [&bed.a, &bed.b] {
        assert_eq!(counter(ns, "TcpInCsumErrors"), 0, "TcpInCsumErrors in {ns}");
    }
    // the capture, decoded by tshark with checksum validation on
    let out = Command::new("tshark")
        .args([
            "-r",
            &pcap_s,
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "tcp.checksum.status", "-e", "ip.checksum.status"])
        .args(["-e", "tcp.options.mptcp.subtype"])
        .output()
        .expect("tshark -r");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    let prio = rows
        .iter()
        .filter(|r| r.get(2).is_some_and(|s| s.split(',').any(|t| t == "5")))
        .count();
    let bad = rows
        .iter()
        .filter(|r| r[0] == "0" || r.get(1).is_some_and(|s| *s == "0"))
        .count();
    eprintln!(
        "offload {onoff}: {} packets captured, {prio} with MP_PRIO, {bad} with a bad checksum",
        rows.len()
    );
    assert!(prio > 0, "the capture holds MP_PRIO segments");
    if !offload {
        assert_eq!(bad, 0, "no bad IPv4/TCP checksum on the wire");
    }
}

#[test]
fn checksums_on_the_wire_offload_off_v4() {
    if root_or_skip("checksums_on_the_wire_offload_off_v4") && have_tshark() {
        csum_scenario(Family::V4, false);
    }
}

#[test]
fn checksums_on_the_wire_offload_off_v6() {
    if root_or_skip("checksums_on_the_wire_offload_off_v6") && have_tshark() {
        csum_scenario(Family::V6, false);
    }
}

#[test]
fn checksums_offload_on_v4() {
    if root_or_skip("checksums_offload_on_v4") && have_tshark() {
        csum_scenario(Family::V4, true);
    }
}
