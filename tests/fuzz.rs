//! Packet fuzzing: generated frames through every selector and actor and
//! through whole chains, on XDP, TC egress and TC ingress, with
//! BPF_PROG_TEST_RUN (emptcp::testrun::Harness). Each output is judged by
//! the independent decoder in tests/pktlib, never by the C code:
//!
//! * the verdict is "pass" (drop only where a stage drops by design:
//!   `drop`, `blk_subflow` mode join, `rate_limit` (data past its budget);
//!   redirect only for `redirect`);
//! * the output is the input byte for byte, or a well-formed packet:
//!   correct IPv4 and TCP checksums, consistent lengths, a TCP header of at
//!   most 60 bytes, option bytes that parse, the same payload.
//!
//! An input that was already broken (a mutation left a wrong checksum or a
//! bad length) may come out changed only if the change added nothing
//! broken: its checksums are off by exactly as much as the input's (an
//! incremental update keeps the error, it cannot know the original) and
//! every other problem of the output is one the input had.
//!
//! Inputs: the golden packets (MP_CAPABLE, MP_JOIN, DSS, ADD_ADDR v4/v6,
//! echo, REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST, plain TCP;
//! IPv4 and IPv6, both directions), random byte mutations of them (with
//! the checksums fixed up most of the time so that the mutation reaches
//! the stages), truncations at every offset, generated option areas
//! (lengths 0, 1 and overrunning, duplicated MPTCP options, full 40-byte
//! areas), IPv4 options, IPv6 extension header chains, VLAN stacks,
//! non-TCP frames, tiny and jumbo frames.
//!
//! A violation is saved as tests/fixtures/fuzz-RIG-HOOK-HASH.bin and every
//! saved file is replayed first on the next run (a regression suite).
//!
//! The test suite runs a short, fixed-seed round; `scripts/fuzz` a long one:
//!   EMPTCP_FUZZ_INPUTS  generated inputs (default 30000)
//!   EMPTCP_FUZZ_SEED    PRNG seed (default fixed)
//!   EMPTCP_FUZZ_SWEEP   1: truncation sweep of every golden packet through
//!                       every rig (default: each through one rig)
//!   EMPTCP_FUZZ_TC_INGRESS  1: also load every rig on tc-ingress
//! Needs root; otherwise prints "SKIPPED: needs root" and passes.

#[allow(dead_code)]
mod pktlib;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;

use pktlib::build::*;
use pktlib::decode;
use pktlib::opts::*;

// ---------------------------------------------------------------------------
// a small deterministic PRNG (xorshift64*)
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// 0..n (n > 0)
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// true with probability num/den
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

// ---------------------------------------------------------------------------
// verdicts and rigs
// ---------------------------------------------------------------------------

/// The hooks of the short run; the long run (EMPTCP_FUZZ_TC_INGRESS=1)
/// adds tc-ingress (the same TC objects, loaded for the other direction).
const HOOKS: [Hook; 3] = [Hook::Xdp, Hook::TcEgress, Hook::TcIngress];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop,
    Redirect,
    Other(i32),
}

fn verdict(h: Hook, ret: i32) -> Verdict {
    match (h, ret) {
        (Hook::Xdp, 2) => Verdict::Pass,
        (Hook::Xdp, 1) => Verdict::Drop,
        (Hook::Xdp, 4) => Verdict::Redirect,
        (Hook::Xdp, r) => Verdict::Other(r),
        (_, -1 | 0) => Verdict::Pass,
        (_, 2) => Verdict::Drop,
        (_, 7) => Verdict::Redirect,
        (_, r) => Verdict::Other(r),
    }
}

/// A set of chains loaded on one hook, and the verdicts it may give.
struct RigSpec {
    name: &'static str,
    /// (selectors, actors) as TOML bodies
    chains: Vec<(Vec<String>, Vec<String>)>,
    may_drop: bool,
    may_redirect: bool,
    tc_only: bool,
}

fn s(x: &str) -> String {
    x.to_owned()
}

const SB: &str = "kind = \"set_backup\"\nbackup = true\nonce = false";

fn sel_rig(name: &'static str, sel: &[&str]) -> RigSpec {
    RigSpec {
        name,
        chains: vec![(sel.iter().map(|x| s(x)).collect(), vec![s(SB)])],
        may_drop: false,
        may_redirect: false,
        tc_only: false,
    }
}

fn act_rig(name: &'static str, act: &[&str]) -> RigSpec {
    RigSpec {
        name,
        chains: vec![(Vec::new(), act.iter().map(|x| s(x)).collect())],
        may_drop: false,
        may_redirect: false,
        tc_only: false,
    }
}

/// Every selector (each followed by set_backup, so that what it picks
/// shows), every actor alone, and whole chains.
fn rigs() -> Vec<RigSpec> {
    let all_types = "kind = \"packet_type\"\ntypes = [\"mp_capable_syn\", \"mp_capable_synack\", \
        \"mp_capable_ack\", \"mp_join_syn\", \"mp_join_synack\", \"mp_join_ack\", \"dss_data\", \
        \"dss_ack\", \"data_fin\", \"add_addr\", \"add_addr_echo\", \"rm_addr\", \"mp_prio\", \
        \"mp_fail\", \"mp_fastclose\", \"mp_tcprst\", \"tcp_plain\", \"syn\", \"fin\", \"rst\"]";
    let mut v = vec![
        sel_rig(
            "ip_pair",
            &["kind = \"ip_pair\"\nsrc = \"10.1.0.1\"\nbidir = true"],
        ),
        sel_rig(
            "ip_pair6",
            &["kind = \"ip_pair\"\nsrc = \"fd00:1::1\"\ndst = \"fd00:1::2\"\nbidir = true"],
        ),
        sel_rig("packet_type", &[all_types]),
        sel_rig(
            "packet_type_not",
            &["kind = \"packet_type\"\ntypes = [\"dss_ack\", \"tcp_plain\"]\nnot = true"],
        ),
        sel_rig(
            "subflow",
            &["kind = \"subflow\"\nsaddr = \"10.1.0.1\"\nsport = 40000\nbidir = true"],
        ),
        sel_rig(
            "src_dst",
            &[
                "kind = \"src\"\naddr = \"10.0.0.0/8\"",
                "kind = \"dst\"\naddr = \"fd00::/16\"\nop = \"or\"",
            ],
        ),
        sel_rig("port", &["kind = \"port\"\ndport = 5201"]),
        sel_rig(
            "sequence_dsn",
            &["kind = \"sequence\"\nfield = \"dsn\"\nfrom = 0\nto = \"1MiB\""],
        ),
        sel_rig(
            "sequence_ssn",
            &["kind = \"sequence\"\nfield = \"ssn\"\nrelative = false\nfrom = 0\nto = 4294967295"],
        ),
        sel_rig(
            "sequence_ack",
            &["kind = \"sequence\"\nfield = \"data_ack\"\nfrom = 100"],
        ),
        act_rig("set_backup", &[SB]),
        act_rig(
            "set_backup_clear_once",
            &["kind = \"set_backup\"\nbackup = false\nonce = true"],
        ),
        act_rig("blk_subflow", &["kind = \"blk_subflow\""]),
        RigSpec {
            may_drop: true,
            ..act_rig(
                "blk_subflow_join",
                &["kind = \"blk_subflow\"\nmode = \"join\""],
            )
        },
        // add_subflow needs an ADD_ADDR kept by blk_subflow on the same rig
        RigSpec {
            name: "add_subflow",
            chains: vec![
                (
                    vec![s("kind = \"packet_type\"\ntypes = [\"add_addr\"]")],
                    vec![s("kind = \"blk_subflow\"")],
                ),
                (Vec::new(), vec![s("kind = \"add_subflow\"")]),
            ],
            may_drop: false,
            may_redirect: false,
            tc_only: false,
        },
        // rate_limit drops data segments past its budget by design
        RigSpec {
            may_drop: true,
            ..act_rig(
                "rate_limit",
                &["kind = \"rate_limit\"\nrate = \"8bit\"\nburst = \"1500\""],
            )
        },
        RigSpec {
            tc_only: true,
            ..act_rig("set_mark", &["kind = \"set_mark\"\nmark = 7"])
        },
        RigSpec {
            may_redirect: true,
            ..act_rig("redirect", &["kind = \"redirect\"\ndev = \"lo\""])
        },
        act_rig("get_connect", &["kind = \"get_connect\""]),
        act_rig("get_subflow", &["kind = \"get_subflow\""]),
        act_rig("record", &["kind = \"record\""]),
        act_rig("pass", &["kind = \"pass\""]),
        RigSpec {
            may_drop: true,
            ..act_rig("drop", &["kind = \"drop\""])
        },
        // path management: ADD_ADDR kept, then put back after a data ACK
        RigSpec {
            name: "chain_pm",
            chains: vec![
                (
                    vec![s("kind = \"packet_type\"\ntypes = [\"add_addr\"]")],
                    vec![s("kind = \"blk_subflow\"")],
                ),
                (
                    vec![s("kind = \"sequence\"\nfield = \"data_ack\"\nfrom = 1000")],
                    vec![s("kind = \"add_subflow\"")],
                ),
                (
                    Vec::new(),
                    vec![
                        s("kind = \"record\""),
                        s("kind = \"get_connect\""),
                        s("kind = \"get_subflow\""),
                    ],
                ),
            ],
            may_drop: false,
            may_redirect: false,
            tc_only: false,
        },
        // several rewriting actors in a row, then a join drop
        RigSpec {
            name: "chain_mix",
            chains: vec![
                (
                    vec![
                        s("kind = \"ip_pair\"\nsrc = \"10.1.0.1\"\nbidir = true"),
                        s("kind = \"port\"\nsport = 5201\nop = \"or\""),
                    ],
                    vec![
                        s("kind = \"rate_limit\"\nrate = \"10mbit\""),
                        s(SB),
                        s("kind = \"add_subflow\""),
                        s("kind = \"record\""),
                    ],
                ),
                (
                    vec![s("kind = \"packet_type\"\ntypes = [\"syn\"]\nnot = true")],
                    vec![
                        s("kind = \"blk_subflow\""),
                        s("kind = \"set_backup\"\nbackup = false\nonce = false"),
                    ],
                ),
                (
                    vec![s("kind = \"packet_type\"\ntypes = [\"mp_join_syn\"]")],
                    vec![s("kind = \"drop\"")],
                ),
            ],
            may_drop: true,
            may_redirect: false,
            tc_only: false,
        },
    ];
    v.retain(|r| !r.chains.is_empty());
    v
}

fn policy_text(hook: Hook, r: &RigSpec) -> String {
    let mut t = String::new();
    for (i, (sel, act)) in r.chains.iter().enumerate() {
        let _ = write!(
            t,
            "[[chain]]\nname = \"f{i}\"\ndev = \"test0\"\nhook = \"{hook}\"\n"
        );
        for x in sel {
            let _ = write!(t, "[[chain.select]]\n{x}\n");
        }
        for x in act {
            let _ = write!(t, "[[chain.act]]\n{x}\n");
        }
    }
    t
}

struct Rig<'a> {
    spec: &'a RigSpec,
    hook: Hook,
    h: Harness,
    runs: u64,
    changed: u64,
    dropped: u64,
}

fn hook_tag(h: Hook) -> &'static str {
    match h {
        Hook::Xdp => "xdp",
        Hook::TcEgress => "tce",
        Hook::TcIngress => "tci",
    }
}

// ---------------------------------------------------------------------------
// golden packets
// ---------------------------------------------------------------------------

fn ts() -> Vec<u8> {
    nop_nop_ts(0x0102_0304, 0x0506_0708)
}

fn bases() -> Vec<(String, Pkt)> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let a4 = IpAddr::V4(V4_A);
    let b4 = IpAddr::V4(V4_B);
    let c4 = IpAddr::V4(V4_C);
    let a6 = IpAddr::V6(V6_A);
    let b6 = IpAddr::V6(V6_B);
    let ann4 = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2));
    let ann6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2));
    let syn_opts = |mp: &[u8]| padded(&[&mss(1460), &sack_ok(), &ts(), &[NOP], &wscale(7), mp]);
    let dss_full = Dss {
        ack: Some(0x1122_3344_5566_7788),
        ack64: true,
        map: Some((0x0102_0304_0506_0708, 0x1000, 100)),
        dsn64: true,
        csum: Some(0xabcd),
        data_fin: true,
    };
    let kinds: Vec<(&str, Pkt)> = vec![
        (
            "mpc_syn",
            Pkt::v4(V4_A, V4_B).flags(SYN).opts(syn_opts(&mpc_syn())),
        ),
        (
            "mpc_synack",
            Pkt::v4(V4_A, V4_B)
                .flags(SYN | ACK)
                .opts(syn_opts(&mpc_synack(0x0102_0304_0506_0708))),
        ),
        (
            "mpc_ack",
            Pkt::v4(V4_A, V4_B).opts(cat(&[&ts(), &mpc_ack(1, 2)])),
        ),
        (
            "mpc_ack_data",
            Pkt::v4(V4_A, V4_B)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &mpc_ack_data(1, 2, 100, None)]))
                .payload(100),
        ),
        (
            "mpj_syn",
            Pkt::v4(V4_A, V4_B)
                .flags(SYN)
                .opts(syn_opts(&mpj_syn(false, 2, 0xdead_beef, 7))),
        ),
        (
            "mpj_synack",
            Pkt::v4(V4_A, V4_B)
                .flags(SYN | ACK)
                .opts(syn_opts(&mpj_synack(true, 2, 9, 7))),
        ),
        (
            "mpj_ack",
            Pkt::v4(V4_A, V4_B).opts(cat(&[&ts(), &mpj_ack()])),
        ),
        (
            "dss_ack",
            Pkt::v4(V4_A, V4_B).opts(cat(&[&ts(), &dss_ack(0x0a0b_0c0d)])),
        ),
        (
            "dss_data_small",
            Pkt::v4(V4_A, V4_B)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &dss_map(0x0a0b_0c0d, 0x1000, 1)]))
                .payload(1),
        ),
        (
            "dss_data",
            Pkt::v4(V4_A, V4_B)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &dss_map(0x0a0b_0c0d, 0x1000, 1400)]))
                .payload(1400),
        ),
        (
            "dss_64_csum_fin",
            Pkt::v4(V4_A, V4_B)
                .flags(ACK | FIN)
                .opts(padded(&[&ts(), &dss_full.bytes()]))
                .payload(100),
        ),
        (
            "add_addr4",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&ts(), &add_addr(false, 1, ann4, None)])),
        ),
        (
            "add_addr4_port",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&ts(), &add_addr(false, 1, ann4, Some(5202))])),
        ),
        (
            "add_addr6",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&ts(), &add_addr(false, 2, ann6, None)])),
        ),
        (
            "add_addr6_port",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&add_addr(false, 2, ann6, Some(1))])),
        ),
        (
            "add_addr_echo",
            Pkt::v4(V4_A, V4_B).opts(padded(&[
                &ts(),
                &dss_ack(5),
                &add_addr(true, 1, ann4, None),
            ])),
        ),
        (
            "rm_addr",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&ts(), &dss_ack(5), &rm_addr(&[1, 2])])),
        ),
        (
            "mp_prio",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&ts(), &dss_ack(5), &mp_prio(true)])),
        ),
        (
            "mp_fail",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&dss_ack(5), &mp_fail(9)])),
        ),
        (
            "mp_fastclose",
            Pkt::v4(V4_A, V4_B)
                .flags(ACK | RST)
                .opts(padded(&[&mp_fastclose(9)])),
        ),
        (
            "mp_tcprst",
            Pkt::v4(V4_A, V4_B)
                .flags(RST)
                .opts(padded(&[&mp_tcprst(1, 2)])),
        ),
        ("tcp_ts", Pkt::v4(V4_A, V4_B).opts(ts())),
        (
            "tcp_sack",
            Pkt::v4(V4_A, V4_B).opts(padded(&[&ts(), &[NOP, NOP], &sack(&[(1, 2), (3, 4)])])),
        ),
        (
            "tcp_syn",
            Pkt::v4(V4_A, V4_B).flags(SYN).opts(syn_opts(&[])),
        ),
        ("tcp_bare_ack", Pkt::v4(V4_A, V4_B)),
        (
            "tcp_bare_data",
            Pkt::v4(V4_A, V4_B).flags(ACK | PSH).payload(64),
        ),
        (
            "dss_ack_40",
            Pkt::v4(V4_A, V4_B).opts(cat(&[
                &ts(),
                &dss_ack(7),
                &sack(&[(1, 2), (3, 4)]),
                &[NOP, NOP],
            ])),
        ),
        (
            "dss_data_40",
            Pkt::v4(V4_A, V4_B)
                .flags(ACK | PSH)
                .opts(cat(&[&ts(), &dss_map(7, 9, 200), &sack(&[(1, 2)])]))
                .payload(200),
        ),
    ];
    let mut out = Vec::new();
    for (name, p) in kinds {
        for (fam, s, d, rev) in [
            ("v4", a4, b4, false),
            ("v4r", a4, b4, true),
            ("v4c", c4, b4, false),
            ("v6", a6, b6, false),
            ("v6r", a6, b6, true),
        ] {
            let mut q = Pkt::ip(s, d);
            q.tcp = p.tcp.clone();
            if rev {
                q = q.reversed();
            }
            out.push((format!("{name}/{fam}"), q));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// generators and mutators
// ---------------------------------------------------------------------------

/// One random TCP option (valid, odd or broken).
fn rand_opt(r: &mut Rng) -> Vec<u8> {
    let a4 = IpAddr::V4(V4_D);
    let a6 = IpAddr::V6(V6_D);
    match r.below(30) {
        0 => vec![NOP],
        1 => vec![EOL],
        2 => mss(r.next() as u16),
        3 => wscale(r.byte() % 16),
        4 => sack_ok(),
        5 => {
            let n = 1 + r.below(4);
            sack(
                &(0..n)
                    .map(|_| (r.next() as u32, r.next() as u32))
                    .collect::<Vec<_>>(),
            )
        }
        6 => nop_nop_ts(r.next() as u32, r.next() as u32),
        7 => mpc_syn(),
        8 => mpc_synack(r.next()),
        9 => mpc_ack(r.next(), r.next()),
        10 => mpc_ack_data(
            r.next(),
            r.next(),
            r.next() as u16,
            r.chance(1, 2).then_some(7),
        ),
        11 => mpj_syn(r.chance(1, 2), r.byte(), r.next() as u32, r.next() as u32),
        12 => mpj_synack(r.chance(1, 2), r.byte(), r.next(), r.next() as u32),
        13 => mpj_ack(),
        14 => Dss {
            ack: r.chance(3, 4).then(|| r.next()),
            ack64: r.chance(1, 2),
            map: r
                .chance(1, 2)
                .then(|| (r.next(), r.next() as u32, r.next() as u16)),
            dsn64: r.chance(1, 2),
            csum: r.chance(1, 4).then_some(0x1234),
            data_fin: r.chance(1, 4),
        }
        .bytes(),
        15 => add_addr(r.chance(1, 3), r.byte(), a4, r.chance(1, 2).then_some(80)),
        16 => add_addr(r.chance(1, 3), r.byte(), a6, r.chance(1, 2).then_some(80)),
        17 => {
            let n = 1 + r.below(4);
            rm_addr(&r.bytes(n))
        }
        18 => mp_prio(r.chance(1, 2)),
        19 => mp_fail(r.next()),
        20 => mp_fastclose(r.next()),
        21 => mp_tcprst(r.byte(), r.byte()),
        // MPTCP option of any subtype with any length (0..=40)
        22 | 23 => {
            let len = r.below(41);
            let mut v = vec![KIND_MPTCP, len as u8, r.byte()];
            v.extend(r.bytes(len.saturating_sub(3)));
            v
        }
        // lengths 0 and 1
        24 => vec![r.byte() | 2, 0],
        25 => vec![r.byte() | 2, 1],
        // overrunning: a length past anything that can follow
        26 => vec![*r.pick(&[8u8, 30, 2, 5, 99]), 40 + r.byte() % 200, r.byte()],
        // an unknown kind with a sane length
        27 => {
            let len = 2 + r.below(12);
            let mut v = vec![r.byte() | 0x40, len as u8];
            v.extend(r.bytes(len - 2));
            v
        }
        // MPTCP option with a valid-looking length and a random body
        _ => {
            let len = *r.pick(&[3usize, 4, 8, 12, 16, 18, 20, 22, 24, 28, 30]);
            let sub = (r.byte() % 9) << 4 | (r.byte() & 0xf);
            let mut v = vec![KIND_MPTCP, len as u8, sub];
            v.extend(r.bytes(len - 3));
            v
        }
    }
}

/// A random option area: up to 40 bytes, a multiple of 4; often full,
/// sometimes with one MPTCP option repeated.
fn rand_opts(r: &mut Rng) -> Vec<u8> {
    let target = if r.chance(1, 3) { 40 } else { 4 * r.below(11) };
    let mut v = Vec::new();
    if r.chance(1, 4) {
        // duplicated MPTCP options
        let o = loop {
            let o = rand_opt(r);
            if o.first() == Some(&KIND_MPTCP) {
                break o;
            }
        };
        for _ in 0..2 + r.below(2) {
            v.extend_from_slice(&o);
        }
    }
    while v.len() < target {
        v.extend(rand_opt(r));
    }
    v.truncate(target);
    // pad a short tail: NOPs, EOL or zeros
    let pad = *r.pick(&[NOP, EOL, 0xaa]);
    while v.len() % 4 != 0 {
        v.push(pad);
    }
    v
}

fn rand_ip4_opts(r: &mut Rng) -> Vec<u8> {
    let n = 4 * (1 + r.below(10));
    let mut v = match r.below(5) {
        0 => vec![NOP; n],
        1 => {
            // record route with room
            let mut v = vec![7, n as u8 - 1, 4];
            v.resize(n - 1, 0);
            v.push(0);
            v
        }
        2 => {
            let mut v = vec![148, 4, 0, 0];
            v.resize(n, 0);
            v
        }
        3 => {
            let mut v = vec![68, n as u8, 5, 0];
            v.resize(n, 0);
            v
        }
        _ => r.bytes(n),
    };
    v.truncate(40);
    v
}

fn with_ext(mut p: Pkt, r: &mut Rng) -> Pkt {
    for _ in 0..1 + r.below(6) {
        let (kind, body) = match r.below(5) {
            0 => (EXT_HOP, padn_body(6 + 8 * r.below(14))),
            1 | 2 => (EXT_DEST, padn_body(6 + 8 * r.below(6))),
            3 => (EXT_ROUTING, routing_body()),
            _ => (
                EXT_FRAGMENT,
                fragment_body(r.below(8) as u16, r.chance(1, 2)),
            ),
        };
        p = p.ext(kind, body);
    }
    p
}

/// The offset of the network header and the EtherType (after VLAN tags).
fn l3_of(b: &[u8]) -> Option<(usize, u16)> {
    if b.len() < 14 {
        return None;
    }
    let mut et = u16::from_be_bytes([b[12], b[13]]);
    let mut off = 14;
    while et == 0x8100 || et == 0x88a8 {
        if b.len() < off + 4 {
            return None;
        }
        et = u16::from_be_bytes([b[off + 2], b[off + 3]]);
        off += 4;
    }
    Some((off, et))
}

/// Where the checksummed parts of a frame are: (IPv4 header range, TCP
/// segment range, pseudo-header addresses).
struct Sums {
    ip4: Option<(usize, usize)>,
    tcp: Option<(usize, usize, Vec<u8>, bool)>,
}

fn sums_of(b: &[u8]) -> Sums {
    let mut s = Sums {
        ip4: None,
        tcp: None,
    };
    let Some((off, et)) = l3_of(b) else {
        return s;
    };
    let (l4, end, addrs, v6, proto) = match et {
        0x0800 => {
            if b.len() < off + 20 {
                return s;
            }
            let ihl = (b[off] & 0x0f) as usize * 4;
            if ihl < 20 || b.len() < off + ihl {
                return s;
            }
            s.ip4 = Some((off, off + ihl));
            let tot = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
            let frag = u16::from_be_bytes([b[off + 6], b[off + 7]]);
            if frag & 0x3fff != 0 || tot < ihl {
                return s;
            }
            (
                off + ihl,
                off + tot,
                b[off + 12..off + 20].to_vec(),
                false,
                b[off + 9],
            )
        }
        0x86dd => {
            if b.len() < off + 40 {
                return s;
            }
            let plen = u16::from_be_bytes([b[off + 4], b[off + 5]]) as usize;
            let mut next = b[off + 6];
            let mut p = off + 40;
            while matches!(next, 0 | 43 | 60) {
                if b.len() < p + 8 {
                    return s;
                }
                next = b[p];
                p += (b[p + 1] as usize + 1) * 8;
            }
            (
                p,
                off + 40 + plen,
                b[off + 8..off + 40].to_vec(),
                true,
                next,
            )
        }
        _ => return s,
    };
    if proto == 6 && end <= b.len() && end >= l4 + 18 {
        s.tcp = Some((l4, end, addrs, v6));
    }
    s
}

fn tcp_sum(b: &[u8], l4: usize, end: usize, addrs: &[u8], v6: bool) -> u64 {
    let seg = &b[l4..end];
    let mut acc = decode::ones_sum(addrs, 0);
    if v6 {
        acc = decode::ones_sum(&(seg.len() as u32).to_be_bytes(), acc);
        acc = decode::ones_sum(&[0, 0, 0, 6], acc);
    } else {
        acc = decode::ones_sum(&[0, 6], acc);
        acc = decode::ones_sum(&(seg.len() as u16).to_be_bytes(), acc);
    }
    decode::ones_sum(seg, acc)
}

/// Recomputes the IPv4 header and TCP checksums where the layout allows.
fn fix_sums(b: &mut [u8]) {
    let s = sums_of(b);
    if let Some((a, e)) = s.ip4 {
        b[a + 10] = 0;
        b[a + 11] = 0;
        let c = decode::checksum(&b[a..e]);
        b[a + 10..a + 12].copy_from_slice(&c.to_be_bytes());
    }
    // the IP header may have changed the TCP layout: look again
    let s = sums_of(b);
    if let Some((l4, end, addrs, v6)) = s.tcp {
        b[l4 + 16] = 0;
        b[l4 + 17] = 0;
        let c = !decode::fold(tcp_sum(b, l4, end, &addrs, v6));
        b[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    }
}

/// How far off each checksum is (the folded sum over the covered bytes,
/// 0xffff when right; 0x0000 is the same one's complement value).
fn defects(b: &[u8]) -> (Option<u16>, Option<u16>) {
    let s = sums_of(b);
    let norm = |x: u16| if x == 0 { 0xffff } else { x };
    let ip = s
        .ip4
        .map(|(a, e)| norm(decode::fold(decode::ones_sum(&b[a..e], 0))));
    let tcp = s
        .tcp
        .map(|(l4, end, addrs, v6)| norm(decode::fold(tcp_sum(b, l4, end, &addrs, v6))));
    (ip, tcp)
}

/// Mutates header fields that carry lengths to edge values.
fn mutate_lengths(b: &mut [u8], r: &mut Rng) {
    let Some((off, et)) = l3_of(b) else { return };
    let edge = |r: &mut Rng, cur: usize, max: usize| -> usize {
        match r.below(6) {
            0 => 0,
            1 => cur.saturating_sub(1 + r.below(8)),
            2 => cur + 1 + r.below(8),
            3 => max,
            4 => cur ^ (1 << r.below(12)),
            _ => r.below(max + 1),
        }
    };
    match et {
        0x0800 if b.len() >= off + 20 => match r.below(3) {
            0 => {
                let tot = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
                let n = edge(r, tot, 0xffff) as u16;
                b[off + 2..off + 4].copy_from_slice(&n.to_be_bytes());
            }
            1 => b[off] = 0x40 | (r.byte() & 0x0f),
            _ => {
                let ihl = (b[off] & 0x0f) as usize * 4;
                if b.len() >= off + ihl + 13 {
                    b[off + ihl + 12] = (r.byte() & 0xf0) | (b[off + ihl + 12] & 0x0f);
                }
            }
        },
        0x86dd if b.len() >= off + 40 => match r.below(2) {
            0 => {
                let pl = u16::from_be_bytes([b[off + 4], b[off + 5]]) as usize;
                let n = edge(r, pl, 0xffff) as u16;
                b[off + 4..off + 6].copy_from_slice(&n.to_be_bytes());
            }
            _ => {
                let d = decode::decode(b);
                if let Some(t) = d.tcp {
                    b[t.l4_off + 12] = (r.byte() & 0xf0) | (b[t.l4_off + 12] & 0x0f);
                } else if b.len() > off + 41 {
                    // an extension header length
                    b[off + 41] = r.byte();
                }
            }
        },
        _ => {}
    }
}

/// A frame of random bytes, sometimes with a plausible EtherType and IP
/// version so that it gets past the first checks.
fn rand_frame(r: &mut Rng, max: usize) -> Vec<u8> {
    let n = r.below(max + 1);
    let mut b = r.bytes(n);
    if n >= 15 && r.chance(2, 3) {
        let (et, ver) = *r.pick(&[(0x0800u16, 0x45u8), (0x86dd, 0x60), (0x8100, 0x00)]);
        b[12..14].copy_from_slice(&et.to_be_bytes());
        b[14] = ver;
        if ver == 0x45 && n >= 24 {
            b[23] = 6;
        }
        if ver == 0x60 && n >= 21 {
            b[20] = 6;
        }
        if r.chance(1, 2) {
            fix_sums(&mut b);
        }
    }
    b
}

fn non_tcp(r: &mut Rng) -> Vec<u8> {
    let mut b = match r.below(6) {
        0 => udp_v4(),
        1 => udp_v6(),
        2 => icmp_v4(),
        3 => icmp_v6(),
        4 => arp(),
        _ => {
            // TCP proto number replaced
            let mut b = Pkt::v4(V4_A, V4_B).opts(ts()).build();
            b[14 + 9] = *r.pick(&[17u8, 1, 47, 50, 132, 255]);
            b
        }
    };
    if r.chance(1, 4) {
        let et = u16::from_be_bytes([b[12], b[13]]);
        let mut h = link_header(&[(TPID_8021Q, 5)], etherparse::EtherType(et));
        h.extend_from_slice(&b[14..]);
        b = h;
    }
    b
}

/// One generated input.
fn gen(r: &mut Rng, bases: &[(String, Pkt)]) -> (String, Vec<u8>) {
    let (bname, base) = &bases[r.below(bases.len())];
    let roll = r.below(100);
    if roll < 4 {
        return ("non_tcp".into(), non_tcp(r));
    }
    if roll < 8 {
        return ("tiny".into(), rand_frame(r, 80));
    }
    if roll < 10 {
        return ("random".into(), rand_frame(r, 400));
    }
    let mut p = base.clone();
    let mut what = bname.clone();
    // structural variations, built with correct checksums
    if r.chance(1, 3) {
        p.tcp.opts = rand_opts(r);
        what += "+opts";
    }
    if r.chance(1, 6) {
        match &p.ip {
            Ip::V4 { .. } => {
                p = p.ip4_opts(rand_ip4_opts(r));
                what += "+ip4opts";
            }
            Ip::V6 { .. } => {
                p = with_ext(p, r);
                what += "+ext";
            }
        }
    }
    if r.chance(1, 8) {
        for _ in 0..1 + r.below(4) {
            let tpid = *r.pick(&[TPID_8021Q, TPID_8021AD]);
            p = p.vlan(tpid, r.below(4095) as u16);
        }
        what += "+vlan";
    }
    if r.chance(1, 10) {
        p.tcp.payload = payload(*r.pick(&[0usize, 1, 3, 536, 1448, 2900, 3400, 3600, 9000]));
        what += "+size";
    }
    if r.chance(1, 10) {
        p = p.trailer(1 + r.below(20));
        what += "+trailer";
    }
    if r.chance(1, 10) {
        p.tcp.flags = r.byte();
        what += "+flags";
    }
    let mut b = p.build();
    // raw mutations
    let roll = r.below(100);
    if roll < 35 {
        let hdr = (14 + 4 * p.vlans.len() + 60 + 60 + 40).min(b.len());
        for _ in 0..1 + r.below(6) {
            if b.is_empty() {
                break;
            }
            let i = if r.chance(4, 5) && hdr > 0 {
                r.below(hdr)
            } else {
                r.below(b.len())
            };
            if r.chance(1, 2) {
                b[i] ^= 1 << r.below(8);
            } else {
                b[i] = r.byte();
            }
        }
        what += "+flip";
        if r.chance(3, 4) {
            fix_sums(&mut b);
        }
    } else if roll < 50 {
        mutate_lengths(&mut b, r);
        what += "+len";
        if r.chance(3, 4) {
            fix_sums(&mut b);
        }
    } else if roll < 58 {
        let cut = r.below(b.len() + 1);
        b.truncate(cut);
        what += "+cut";
    } else if roll < 62 {
        let n = 1 + r.below(64);
        let extra = r.bytes(n);
        b.extend_from_slice(&extra);
        what += "+tail";
    }
    (what, b)
}

// ---------------------------------------------------------------------------
// the judge
// ---------------------------------------------------------------------------

/// A problem text with every number taken out (problem kinds compare
/// across offsets and values).
fn kind_of(p: &str) -> String {
    let mut out = String::new();
    let mut prev_digit = false;
    for c in p.chars() {
        let d = c.is_ascii_hexdigit() && (prev_digit || c.is_ascii_digit());
        if d {
            if !prev_digit {
                out.push('#');
            }
        } else if !(prev_digit && c == 'x') {
            out.push(c);
        }
        prev_digit = d || (prev_digit && c == 'x');
    }
    out
}

fn payload_of(b: &[u8]) -> Option<Vec<u8>> {
    let t = decode::decode(b).tcp?;
    let start = t.l4_off + t.hlen;
    (start <= t.ip_end && t.ip_end <= b.len()).then(|| b[start..t.ip_end].to_vec())
}

/// None when the run satisfies the invariant, else what is wrong.
fn judge(spec: &RigSpec, hook: Hook, input: &[u8], ret: i32, out: &[u8]) -> Option<String> {
    let v = verdict(hook, ret);
    match v {
        Verdict::Pass => {}
        Verdict::Drop if spec.may_drop => return None,
        Verdict::Redirect if spec.may_redirect => return None,
        _ => return Some(format!("verdict {v:?} ({ret})")),
    }
    if out == input {
        return None;
    }
    let mut errs = Vec::new();
    let in_ok = decode::verify_tcp(input);
    let out_res = decode::verify_tcp(out);
    match (&in_ok, &out_res) {
        (_, Ok(_)) => {}
        (Ok(_), Err(p)) => errs.extend(p.iter().cloned()),
        (Err(pin), Err(pout)) => {
            let kin: Vec<String> = pin.iter().map(|p| kind_of(p)).collect();
            for p in pout {
                if p.contains("checksum") {
                    continue;
                }
                if !kin.contains(&kind_of(p)) {
                    errs.push(format!("{p} (the input did not have this problem)"));
                }
            }
            let (ip_in, tcp_in) = defects(input);
            let (ip_out, tcp_out) = defects(out);
            if ip_out.is_some() && ip_out != Some(0xffff) && ip_out != ip_in {
                errs.push(format!(
                    "IPv4 header checksum off by {:?}, the input's by {:?}",
                    ip_out, ip_in
                ));
            }
            if tcp_out.is_some() && tcp_out != Some(0xffff) && tcp_out != tcp_in {
                errs.push(format!(
                    "TCP checksum off by {:?}, the input's by {:?}",
                    tcp_out, tcp_in
                ));
            }
        }
    }
    if decode::decode(out).tcp.is_none() {
        errs.push("changed a frame that is no TCP packet".into());
    }
    if let (Some(a), Some(b)) = (payload_of(input), payload_of(out)) {
        if a != b {
            errs.push(format!(
                "payload changed ({} -> {} bytes)",
                a.len(),
                b.len()
            ));
        }
    }
    if errs.is_empty() {
        None
    } else {
        Some(errs.join("; "))
    }
}

/// The kernel's BPF_PROG_TEST_RUN refuses some frames before our programs
/// see them: shorter than Ethernet, on TC shorter than the IP header, and
/// larger than a page less head- and tailroom.
fn kernel_may_refuse(hook: Hook, b: &[u8]) -> bool {
    if b.len() < 14 || b.len() > 3400 {
        return true;
    }
    let min = match u16::from_be_bytes([b[12], b[13]]) {
        0x0800 => 14 + 20,
        0x86dd => 14 + 40,
        _ => 0,
    };
    hook != Hook::Xdp && b.len() < min
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Tally {
    runs: u64,
    refused: u64,
    violations: Vec<String>,
    saved: Vec<PathBuf>,
    by_source: BTreeMap<String, u64>,
}

impl Tally {
    fn run(&mut self, rig: &mut Rig, what: &str, input: &[u8], save: bool) {
        self.runs += 1;
        let o = match rig.h.run(input) {
            Ok(o) => o,
            Err(e) => {
                if kernel_may_refuse(rig.hook, input) {
                    self.refused += 1;
                } else {
                    self.report(rig, what, input, &format!("test run failed: {e:#}"), save);
                }
                return;
            }
        };
        rig.runs += 1;
        if o.data != input {
            rig.changed += 1;
        }
        if verdict(rig.hook, o.ret) == Verdict::Drop {
            rig.dropped += 1;
        }
        if let Some(v) = judge(rig.spec, rig.hook, input, o.ret, &o.data) {
            let detail = if o.data != input && verdict(rig.hook, o.ret) == Verdict::Pass {
                pktlib::diff::report("fuzz", input, None, &o.data)
            } else {
                String::new()
            };
            self.report(rig, what, input, &format!("{v}\n{detail}"), save);
        }
    }

    fn report(&mut self, rig: &Rig, what: &str, input: &[u8], msg: &str, save: bool) {
        let name = format!(
            "fuzz-{}-{}-{:016x}.bin",
            rig.spec.name,
            hook_tag(rig.hook),
            fnv(input)
        );
        if save && self.saved.len() < 200 {
            let dir = fixtures_dir();
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(&name);
            if !path.exists() {
                std::fs::write(&path, input)
                    .unwrap_or_else(|e| panic!("cannot save {}: {e}", path.display()));
            }
            self.saved.push(path);
        }
        *self
            .by_source
            .entry(format!("{} {}", rig.spec.name, hook_tag(rig.hook)))
            .or_default() += 1;
        if self.violations.len() < 30 {
            self.violations.push(format!(
                "{} on {} ({}), input {what} [{name}]: {msg}",
                rig.spec.name,
                rig.hook,
                input.len()
            ));
        }
    }
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED: needs root (fuzz)");
        return false;
    }
    true
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.replace('_', "");
            if let Some(h) = v.strip_prefix("0x") {
                u64::from_str_radix(h, 16)
            } else {
                v.parse()
            }
            .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
        }
        Err(_) => default,
    }
}

#[test]
fn fuzz_packets() {
    if !root() {
        return;
    }
    // a private network namespace for this thread: frames that a stage
    // clones or redirects in a test run go to its loopback, not the host's
    // SAFETY: unshare has no memory-safety preconditions; it only changes
    // this thread's namespace.
    let _ = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    // every rig keeps its programs and maps open: ~2,000 descriptors, over
    // the 1,024 a minimal init (the kernel-matrix VMs) leaves
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }

    let inputs = env_u64("EMPTCP_FUZZ_INPUTS", 30_000);
    let seed = env_u64("EMPTCP_FUZZ_SEED", 0x00e3_7c90_f022_2026);
    let sweep_all = env_u64("EMPTCP_FUZZ_SWEEP", 0) != 0;
    let tc_ingress = env_u64("EMPTCP_FUZZ_TC_INGRESS", 0) != 0;
    let t0 = Instant::now();

    let specs = rigs();
    let mut rigs: Vec<Rig> = Vec::new();
    for spec in &specs {
        for hook in HOOKS {
            if spec.tc_only && hook == Hook::Xdp {
                continue;
            }
            if hook == Hook::TcIngress && !tc_ingress {
                continue;
            }
            let text = policy_text(hook, spec);
            let p = Policy::parse(&text, "fuzz.toml")
                .unwrap_or_else(|e| panic!("rig {} does not parse: {e}\n{text}", spec.name));
            let h = Harness::new(hook, &p.chains).unwrap_or_else(|e| {
                panic!("rig {} on {hook} does not load: {e:#}\n{text}", spec.name)
            });
            rigs.push(Rig {
                spec,
                hook,
                h,
                runs: 0,
                changed: 0,
                dropped: 0,
            });
        }
    }
    let t_load = t0.elapsed();
    let mut tally = Tally {
        runs: 0,
        refused: 0,
        violations: Vec::new(),
        saved: Vec::new(),
        by_source: BTreeMap::new(),
    };

    // 1. saved violations first: each through the rig and hook it failed on
    let mut replayed = 0;
    if let Ok(rd) = std::fs::read_dir(fixtures_dir()) {
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("fuzz-") && n.ends_with(".bin"))
            })
            .collect();
        files.sort();
        for f in files {
            let input = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let n = f.file_name().unwrap().to_string_lossy().into_owned();
            let parts: Vec<&str> = n.trim_end_matches(".bin").split('-').collect();
            let (rname, htag) = (parts[1], parts[2]);
            for rig in rigs
                .iter_mut()
                .filter(|r| r.spec.name == rname && hook_tag(r.hook) == htag)
            {
                replayed += 1;
                tally.run(rig, &format!("fixture {n}"), &input, false);
            }
        }
    }

    // 2. golden packets as they are, then cut at every offset
    let bases = bases();
    let mut rr = 0usize;
    for (name, p) in &bases {
        let full = p.build();
        for rig in rigs.iter_mut() {
            tally.run(rig, name, &full, true);
        }
        for cut in 0..full.len() {
            if sweep_all {
                for rig in rigs.iter_mut() {
                    tally.run(rig, &format!("{name} cut at {cut}"), &full[..cut], true);
                }
            } else {
                let n = rigs.len();
                tally.run(
                    &mut rigs[rr % n],
                    &format!("{name} cut at {cut}"),
                    &full[..cut],
                    true,
                );
                rr += 1;
            }
        }
    }
    let sweep_runs = tally.runs;

    // 3. generated inputs, round robin over the rigs (stateful stages see
    // a stream of related packets)
    let mut r = Rng::new(seed);
    for i in 0..inputs {
        let (what, input) = gen(&mut r, &bases);
        let n = rigs.len();
        let k = i as usize % n;
        tally.run(&mut rigs[k], &what, &input, true);
    }

    let mut per_rig = String::new();
    for rg in &rigs {
        let _ = writeln!(
            per_rig,
            "  {:<22} {:<10} runs {:>8}  changed {:>7}  dropped {:>6}",
            rg.spec.name,
            rg.hook.as_str(),
            rg.runs,
            rg.changed,
            rg.dropped
        );
    }
    eprintln!(
        "fuzz: seed {seed:#x}: {} rigs loaded in {:.1?}; {replayed} fixture replays, {} golden/truncation runs, \
         {inputs} generated inputs; {} runs in all ({} refused by the kernel) in {:.1?}; {} violations\n{per_rig}",
        rigs.len(),
        t_load,
        sweep_runs - replayed as u64,
        tally.runs,
        tally.refused,
        t0.elapsed(),
        tally.by_source.values().sum::<u64>()
    );
    // the inputs must reach the rewriting and dropping paths, or the
    // invariant proves little
    let mut blind = Vec::new();
    for rg in &rigs {
        let rewrites = matches!(
            rg.spec.name,
            "set_backup" | "blk_subflow" | "add_subflow" | "rate_limit" | "chain_pm" | "chain_mix"
        ) || rg.spec.chains[0].1 == [s(SB)];
        // DSN mappings ride on data segments, which set_backup at TC answers
        // with a separate clone: the packet itself stays as it is
        let rewrites = rewrites && !(rg.spec.name == "sequence_dsn" && rg.hook != Hook::Xdp);
        if rewrites && rg.changed == 0 {
            blind.push(format!("{} on {} changed no packet", rg.spec.name, rg.hook));
        }
        if rg.spec.may_drop && rg.dropped == 0 {
            blind.push(format!("{} on {} dropped no packet", rg.spec.name, rg.hook));
        }
    }
    if !tally.by_source.is_empty() {
        let mut s = String::new();
        for (k, n) in &tally.by_source {
            let _ = writeln!(s, "  {k}: {n}");
        }
        panic!(
            "fuzz: violations by rig:\n{s}\nsaved {} inputs under {}\nfirst violations:\n\n{}",
            tally.saved.len(),
            fixtures_dir().display(),
            tally.violations.join("\n\n")
        );
    }
    assert!(
        blind.is_empty(),
        "fuzz: the inputs missed paths:\n  {}",
        blind.join("\n  ")
    );
}
