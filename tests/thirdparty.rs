//! Third-party stages (examples/) built outside cargo with only the public
//! headers, then run in a chain through BPF_PROG_TEST_RUN.

use std::path::{Path, PathBuf};
use std::process::Command;

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn build_examples() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = Command::new(root.join("scripts/build-example"))
        .arg(&out)
        .status()
        .expect("run scripts/build-example");
    assert!(st.success(), "scripts/build-example failed");
    out
}

/// Ethernet + IPv4 (TOS 0) + TCP ACK with `payload` bytes, valid checksums.
fn v4_segment(payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 14 + 20 + 20 + payload];
    p[12] = 0x08;
    let tot = (20 + 20 + payload) as u16;
    {
        let ip = &mut p[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 1, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 1, 0, 2]);
        let c = csum(&ip[..], 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p[34..36].copy_from_slice(&40000u16.to_be_bytes());
    p[36..38].copy_from_slice(&5201u16.to_be_bytes());
    p[46] = 5 << 4;
    p[47] = 0x10;
    p
}

fn csum(b: &[u8], init: u32) -> u16 {
    let mut s = init as u64;
    for ch in b.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            (ch[0] as u16) << 8
        };
        s += w as u64;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn policy(dir: &Path, fam: &str, hook: &str, min: u32, dscp: u32) -> Policy {
    let text = format!(
        r#"
[[chain]]
name = "third-party"
dev = "x"
hook = "{hook}"
  [[chain.select]]
  kind = "custom"
  object = "{d}/min_payload.{fam}.o"
  program = "min_payload"
  params = [{min}]
  [[chain.act]]
  kind = "custom"
  object = "{d}/set_dscp.{fam}.o"
  program = "set_dscp"
  params = [{dscp}]
"#,
        d = dir.display()
    );
    Policy::parse(&text, "thirdparty.toml").expect("policy parses")
}

#[test]
fn third_party_selector_and_actor_run_in_a_chain() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = build_examples();
    for (hook, fam, hname, pass) in [
        (Hook::Xdp, "xdp", "xdp", 2),
        (Hook::TcEgress, "tc", "tc-egress", -1),
    ] {
        let p = policy(&dir, fam, hname, 100, 46);
        let h = Harness::new(hook, &p.chains).expect("load third-party chain");
        // big enough: DSCP 46 (EF) written, checksum still valid
        let pkt = v4_segment(200);
        let out = h.run(&pkt).expect("test run");
        assert_eq!(out.ret, pass, "{fam}: verdict");
        assert_eq!(out.data.len(), pkt.len(), "{fam}: length kept");
        assert_eq!(out.data[15], 46 << 2, "{fam}: TOS byte carries DSCP 46");
        assert_eq!(
            csum(&out.data[14..34], 0),
            0,
            "{fam}: IPv4 header checksum verifies"
        );
        assert_eq!(&out.data[34..], &pkt[34..], "{fam}: TCP untouched");
        assert_eq!(
            h.counter(Some((0, 1)), "hit"),
            1,
            "{fam}: actor counted its hit"
        );
        // too small: not selected, untouched
        let small = v4_segment(10);
        let out = h.run(&small).expect("test run");
        assert_eq!(out.data, small, "{fam}: unselected packet untouched");
        assert_eq!(
            h.counter(Some((0, 0)), "hit"),
            1,
            "{fam}: selector hit once"
        );
        assert_eq!(
            h.counter(Some((0, 0)), "run"),
            2,
            "{fam}: selector ran twice"
        );
    }
}

#[test]
fn third_party_object_of_the_wrong_hook_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = build_examples();
    // XDP objects on a TC hook
    let mut p = policy(&dir, "xdp", "tc-egress", 1, 1);
    p.chains[0].hook = Hook::TcEgress;
    let err = match Harness::new(Hook::TcEgress, &p.chains) {
        Ok(_) => panic!("an XDP object must not load as a TC stage"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("is Xdp, the chain's hook needs SchedCls"),
        "message: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // a program that is not there
    let text = format!(
        "[[chain]]\nname = \"x\"\ndev = \"x\"\nhook = \"xdp\"\n[[chain.act]]\nkind = \"custom\"\nobject = \"{}/set_dscp.xdp.o\"\nprogram = \"nope\"\n",
        dir.display()
    );
    let p = Policy::parse(&text, "t.toml").expect("parses");
    let err = match Harness::new(Hook::Xdp, &p.chains) {
        Ok(_) => panic!("a missing program must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("has no program \"nope\" (it has: set_dscp)"),
        "message: {err}"
    );
}

/// The error of building a chain of `sel` then `act` (object, program,
/// params) on XDP; panics if it loads.
fn refused(sel: (&str, &str, &str), act: (&str, &str, &str)) -> String {
    let text = format!(
        "[[chain]]\nname = \"x\"\ndev = \"x\"\nhook = \"xdp\"\n\
         [[chain.select]]\nkind = \"custom\"\nobject = \"{}\"\nprogram = \"{}\"\nparams = [{}]\n\
         [[chain.act]]\nkind = \"custom\"\nobject = \"{}\"\nprogram = \"{}\"\nparams = [{}]\n",
        sel.0, sel.1, sel.2, act.0, act.1, act.2
    );
    let p = Policy::parse(&text, "t.toml").expect("parses");
    match Harness::new(Hook::Xdp, &p.chains) {
        Ok(_) => panic!("must be refused: {text}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn third_party_declaration_is_checked() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = build_examples();
    let sel = dir.join("min_payload.xdp.o").display().to_string();
    let act = dir.join("set_dscp.xdp.o").display().to_string();
    // the selector listed as an actor, and the other way round
    let err = refused((&act, "set_dscp", "1"), (&sel, "min_payload", "1"));
    assert!(
        err.ends_with("program set_dscp is an actor; listed under [[chain.select]]"),
        "message: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let err = refused((&sel, "min_payload", "1"), (&sel, "min_payload", "1"));
    assert!(
        err.ends_with("program min_payload is a selector; listed under [[chain.act]]"),
        "message: {err}"
    );
    // more parameters than the stage reads
    let err = refused((&sel, "min_payload", "1, 2"), (&act, "set_dscp", "1"));
    assert!(
        err.ends_with(
            "program min_payload reads 4 bytes of parameters; the chain gives 8 (2 values)"
        ),
        "message: {err}"
    );
    // an object built without the stage macros: no declaration
    let src = dir.join("bare.bpf.c");
    std::fs::write(
        &src,
        "#include \"vmlinux.h\"\n#include <emptcp/emptcp.h>\n\
         SEC(EMPTCP_SEC) int bare(emptcp_ctx *ctx)\n{\n\tstruct emptcp_run r;\n\n\
         \tif (emptcp_stage_begin(ctx, &r) < 0)\n\t\treturn EMPTCP_PASS;\n\
         \treturn emptcp_next(ctx, &r);\n}\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n",
    )
    .expect("write bare.bpf.c");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let obj = dir.join("bare.xdp.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    let st = Command::new(clang)
        .current_dir(root)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-DEMPTCP_XDP",
        ])
        .args(["-Iinclude", "-Ivmlinux/x86", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("run clang");
    assert!(st.success(), "clang failed on bare.bpf.c");
    let err = refused(
        (&sel, "min_payload", "1"),
        (&obj.display().to_string(), "bare", ""),
    );
    assert!(
        err.ends_with(
            "program bare declares no stage (build it with EMPTCP_SELECTOR or EMPTCP_ACTOR \
             from <emptcp/chain.h>, stage ABI 5)"
        ),
        "message: {err}"
    );
}
