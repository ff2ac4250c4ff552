//! The complete example of docs/stage-abi.md, taken from the document,
//! built with clang and the public headers only, and run as a chain on
//! both hook families through BPF_PROG_TEST_RUN: it must pass the verifier
//! and do what the document says. (scripts/check-headers builds it too.)

use std::path::{Path, PathBuf};
use std::process::Command;

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;
use etherparse::{PacketBuilder, PacketHeaders, TransportHeader};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The ```c block of the document that starts with `// file: NAME`.
fn doc_example(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/stage-abi.md")).expect("docs/stage-abi.md");
    let tag = format!("```c\n// file: {name}\n");
    let start = doc.find(&tag).unwrap_or_else(|| panic!("no `{tag}` block")) + tag.len();
    let len = doc[start..].find("\n```").expect("the block ends");
    doc[start..start + len + 1].to_owned()
}

/// Builds the example for `fam` ("xdp" or "tc") into the test's directory.
fn build(fam: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stage_abi");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = dir.join("window.bpf.c");
    std::fs::write(&src, doc_example("window.bpf.c")).expect("write window.bpf.c");
    let obj = dir.join(format!("window.{fam}.o"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    let st = Command::new(clang)
        .current_dir(root)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .args([
            "-D__TARGET_ARCH_x86",
            &format!("-DEMPTCP_{}", fam.to_uppercase()),
        ])
        .args(["-Iinclude", "-Ivmlinux/x86", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("run clang");
    assert!(
        st.success(),
        "clang failed on the example of docs/stage-abi.md ({fam})"
    );
    obj
}

/// Ethernet + IPv4 + TCP ACK advertising `window`, 100 bytes of payload.
fn segment(window: u16) -> Vec<u8> {
    let mut p = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 1, 0, 1], [10, 1, 0, 2], 64)
        .tcp(40000, 5201, 1000, window)
        .ack(1)
        .write(&mut p, &[7u8; 100])
        .expect("build the segment");
    p
}

/// The TCP window of `pkt`, after checking its IPv4 and TCP checksums.
fn window_checked(pkt: &[u8], what: &str) -> u16 {
    let h = PacketHeaders::from_ethernet_slice(pkt).unwrap_or_else(|e| panic!("{what}: {e}"));
    let Some(etherparse::NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!("{what}: not IPv4");
    };
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "{what}: IPv4 checksum"
    );
    let Some(TransportHeader::Tcp(tcp)) = &h.transport else {
        panic!("{what}: not TCP");
    };
    let sum = tcp
        .calc_checksum_ipv4(ip, h.payload.slice())
        .expect("checksum");
    assert_eq!(tcp.checksum, sum, "{what}: TCP checksum");
    tcp.window_size
}

#[test]
fn the_documented_selector_and_actor_run_in_a_chain() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    for (hook, fam, hname, pass) in [
        (Hook::Xdp, "xdp", "xdp", 2),
        (Hook::TcEgress, "tc", "tc-egress", -1),
    ] {
        let obj = build(fam);
        // the policy of the document, on this hook
        let text = format!(
            "[[chain]]\nname = \"clamp\"\ndev = \"x\"\nhook = \"{hname}\"\n\
             [[chain.select]]\nkind = \"custom\"\nobject = \"{o}\"\nprogram = \"small_window\"\n\
             params = [1024]\nnot = true\n\
             [[chain.act]]\nkind = \"custom\"\nobject = \"{o}\"\nprogram = \"clamp_window\"\n\
             params = [1024]\n",
            o = obj.display()
        );
        let p = Policy::parse(&text, "stage_abi.toml").expect("the document's policy parses");
        let h = Harness::new(hook, &p.chains)
            .unwrap_or_else(|e| panic!("{fam}: the document's stages load: {e:#}"));

        // a large window: selected (NOT small), clamped to 1024
        let big = segment(65535);
        let out = h.run(&big).expect("test run");
        assert_eq!(out.ret, pass, "{fam}: verdict");
        assert_eq!(
            window_checked(&out.data, fam),
            1024,
            "{fam}: window clamped"
        );
        assert_eq!(out.data.len(), big.len(), "{fam}: length kept");
        // a small window: not selected, byte for byte the same
        let small = segment(512);
        let out = h.run(&small).expect("test run");
        assert_eq!(out.ret, pass, "{fam}: verdict");
        assert_eq!(out.data, small, "{fam}: unselected segment untouched");

        assert_eq!(
            h.counter(Some((0, 0)), "run"),
            2,
            "{fam}: selector ran twice"
        );
        assert_eq!(
            h.counter(Some((0, 0)), "hit"),
            1,
            "{fam}: selector hit (after NOT) once"
        );
        assert_eq!(h.counter(Some((0, 1)), "run"), 2, "{fam}: actor ran twice");
        assert_eq!(
            h.counter(Some((0, 1)), "hit"),
            1,
            "{fam}: actor changed one segment"
        );
    }
}
