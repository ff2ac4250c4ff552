//! Named sets and maps (src/tables/mod.rs): the figures of their issue.
//!
//!     cargo bench --bench tables -- [--quick] [--rounds N] [--repeat N]
//!         [--only lookup|apply|update|memory] [--json FILE]
//!
//! - lookup: per-packet cost of a set-lookup selector against the literal
//!   selector it replaces, BPF_PROG_TEST_RUN, IPv4 and IPv6 packets, sets of
//!   1, 1,000 and 100,000 elements (ports: 65,535, all there are); and of a
//!   `set_mark` whose mark comes from an addr map against a literal one (TC).
//! - apply: wall time of `emptcp apply` of a file with a 100,000-element set
//!   and a 100,000-element map (one chain uses both), fresh and re-applied,
//!   against the same file with empty tables.
//! - update: elements per second through `Runtime::table_add_raw` and
//!   `emptcp set add -f FILE`.
//! - memory: kernel memory per element of each key type (the map's own
//!   count, /proc/PID/fdinfo memlock, and the memory cgroup's kmem charge).
//!
//! The chains are built by the real `apply` (library or CLI) in a private
//! state directory, on veth devices of a private network namespace; the
//! lookup figures run the program each attach point's hook runs (the
//! test harness, src/kernel/testrun.rs, has no tables). Needs root.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use emptcp::attach::XdpMode;
use emptcp::policy::Policy;
use emptcp::runtime::Runtime;
use emptcp::statedir::StateDir;
use emptcp::tables::{self, KeyType, TableDef};

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

type Json = serde_json::Value;

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

/// A private namespace with dummy devices and a private state directory;
/// all of it goes on drop.
struct Bed {
    ns: String,
    dir: PathBuf,
    rt: Runtime,
}

impl Bed {
    fn new(tag: &str, devs: usize) -> Bed {
        let ns = format!("embt{}-{tag}", std::process::id());
        let dir = PathBuf::from(format!("/sys/fs/bpf/{ns}"));
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(std::process::Stdio::null())
            .status();
        sh("ip", &["netns", "add", &ns]);
        let mut batch = String::new();
        for i in 0..devs {
            // veth: this kernel has no dummy devices
            let _ = writeln!(
                batch,
                "link add d{i} type veth peer name p{i}\nlink set d{i} up\nlink set p{i} up"
            );
        }
        let mut c = Command::new("ip")
            .args(["-n", &ns, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("ip -batch");
        std::io::Write::write_all(c.stdin.as_mut().expect("stdin"), batch.as_bytes())
            .expect("write ip batch");
        if !c.wait().expect("ip -batch").success() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            panic!("ip -batch failed");
        }
        let rt = Runtime {
            dir: dir.clone(),
            netns: Some(ns.clone()),
            xdp_mode: XdpMode::Auto,
        };
        Bed { ns, dir, rt }
    }

    /// Removes every chain and table (the state directory).
    fn reset(&self) {
        let _ = self.rt.detach_all();
        if let Ok(Some(sd)) = StateDir::open(&self.dir, false) {
            let _ = sd.remove_ours();
        }
    }

    fn cli(&self, bin: &str, args: &[&str]) -> f64 {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("--state-dir")
            .arg(&self.dir)
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .expect("run emptcp");
        let s = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "emptcp {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.reset();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

// --- packets -------------------------------------------------------------

/// The cost bench's 1,086-byte DSS data segment (IPv4) or its IPv6 twin,
/// 10.1.0.1:40000 -> 10.1.0.2:5201 or [fd00:1::1]:40000 -> [fd00:1::2]:5201.
fn dss_segment(v6: bool) -> Vec<u8> {
    let opts: Vec<u8> = [
        vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        vec![
            30, 18, 0x20, 0x05, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x03, 0xe8,
        ],
        vec![1, 1],
    ]
    .concat();
    let payload = 1000;
    let thl = 20 + opts.len();
    let l3 = if v6 { 40 } else { 20 };
    let mut p = vec![0u8; 14 + l3 + thl + payload];
    if v6 {
        p[12..14].copy_from_slice(&[0x86, 0xdd]);
        p[14] = 0x60;
        p[18..20].copy_from_slice(&((thl + payload) as u16).to_be_bytes());
        p[20] = 6;
        p[21] = 64;
        let s: std::net::Ipv6Addr = "fd00:1::1".parse().expect("v6");
        let d: std::net::Ipv6Addr = "fd00:1::2".parse().expect("v6");
        p[22..38].copy_from_slice(&s.octets());
        p[38..54].copy_from_slice(&d.octets());
    } else {
        p[12] = 0x08;
        p[14] = 0x45;
        p[16..18].copy_from_slice(&((20 + thl + payload) as u16).to_be_bytes());
        p[22] = 64;
        p[23] = 6;
        p[26..30].copy_from_slice(&[10, 1, 0, 1]);
        p[30..34].copy_from_slice(&[10, 1, 0, 2]);
    }
    let t = 14 + l3;
    p[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&5201u16.to_be_bytes());
    p[t + 12] = ((thl / 4) as u8) << 4;
    p[t + 13] = 0x18;
    p[t + 20..t + 20 + opts.len()].copy_from_slice(&opts);
    p
}

/// The packet's own key of `kt` in text form.
fn packet_key(kt: KeyType, v6: bool) -> &'static str {
    match (kt, v6) {
        (KeyType::Addr, false) => "10.1.0.1",
        (KeyType::Addr, true) => "fd00:1::1",
        (KeyType::Prefix, false) => "10.1.0.0/24",
        (KeyType::Prefix, true) => "fd00:1::/64",
        (KeyType::Port, _) => "5201",
        (KeyType::Subflow, false) => "10.1.0.1:40000 . 10.1.0.2:5201",
        (KeyType::Subflow, true) => "[fd00:1::1]:40000 . [fd00:1::2]:5201",
        (KeyType::Pair, false) => "10.1.0.1 . 10.1.0.2",
        (KeyType::Pair, true) => "fd00:1::1 . fd00:1::2",
    }
}

/// Element `i` of a filler: half IPv4, half IPv6, none the packet's.
fn filler(kt: KeyType, i: u32) -> String {
    let v4 = |i: u32| format!("11.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    let v6 = |i: u32| format!("fd00:2::{:x}:{:x}", i >> 16, i & 0xffff);
    let six = i % 2 == 1;
    let a = |i: u32| if six { v6(i) } else { v4(i) };
    match kt {
        KeyType::Addr => a(i),
        KeyType::Prefix if six => format!("fd00:3:{:x}:{:x}::/64", i >> 16, i & 0xffff),
        KeyType::Prefix => format!("12.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff),
        KeyType::Pair => format!("{} . {}", a(i), a(i + 1)),
        KeyType::Subflow if six => format!("[{}]:{} . [{}]:80", v6(i), 1024 + i % 60000, v6(i)),
        KeyType::Subflow => format!("{}:{} . {}:80", v4(i), 1024 + i % 60000, v4(i)),
        // every port but the packet's 5201, from 1 up
        KeyType::Port => (if i + 1 >= 5201 { i + 2 } else { i + 1 }).to_string(),
    }
}

/// `n` elements holding the packet's key(s) (`keys`) and fillers.
fn elements(kt: KeyType, n: u32, keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut i = 0;
    while (v.len() as u32) < n {
        v.push(filler(kt, i));
        i += 1;
    }
    v
}

fn toml_list(v: &[String]) -> String {
    let mut s = String::with_capacity(v.len() * 24);
    s.push('[');
    for (i, e) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{e}\"");
    }
    s.push(']');
    s
}

// --- lookup cost ----------------------------------------------------------

/// Average ns per run of the program pinned at `pin` over `repeat` runs.
struct Prog {
    fd: std::os::fd::OwnedFd,
}

impl Prog {
    fn from_obj(obj: &libbpf_rs::Object) -> Prog {
        let p = obj.progs().next().expect("a program");
        // SAFETY: dup of a valid descriptor the object owns.
        let fd = unsafe { libc::dup(p.as_fd().as_raw_fd()) };
        assert!(fd >= 0, "dup");
        // SAFETY: fd is a fresh descriptor we own.
        Prog {
            fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        }
    }
    fn run(&self, pkt: &[u8], repeat: u32) -> (f64, u32) {
        let mut o = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: pkt.as_ptr() as *const _,
            data_size_in: pkt.len() as u32,
            repeat: repeat as _,
            ..Default::default()
        };
        // SAFETY: o points at pkt, alive for the call; no output buffers.
        let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut o) };
        assert_eq!(
            r,
            0,
            "BPF_PROG_TEST_RUN: {}",
            std::io::Error::last_os_error()
        );
        (o.duration as f64, o.retval)
    }
}

use std::os::fd::AsFd as _;

struct LCase {
    /// "addr", "prefix", "port", "subflow"
    kind: KeyType,
    /// None: the literal selector
    size: Option<u32>,
    /// None: both families
    v6: Option<bool>,
    /// The stages before the chain's `pass` (TOML tables).
    stages: String,
    /// `set_mark` with its mark from an addr map (TC), not a selector.
    mark: bool,
    /// IPv4 prefix lengths of a prefix set made of several (prefix_cases).
    lens: Option<usize>,
}

/// IPv4 prefix sets of 1,000 elements of several lengths, the packet's
/// address in the shortest (a lookup probes every length before it
/// hits): 2, as many as the IPv4 index probes, and one more (the lookup
/// goes to the trie); the sets' TOML into `policy`.
fn prefix_cases(policy: &mut String, cases: &mut Vec<LCase>) {
    const LENS: [u32; 4] = [32, 28, 24, 20];
    for nl in [2, emptcp::abi::TAB_PFX_LENS, emptcp::abi::TAB_PFX_LENS + 1] {
        let mut els = vec![
            "10.0.0.0/8".to_string(),
            packet_key(KeyType::Prefix, true).to_string(),
        ];
        let mut i = 0u32;
        while els.len() < 1000 {
            let len = LENS[i as usize % (nl - 1).min(LENS.len())];
            els.push(format!("12.{}.{}.0/{len}", (i >> 8) & 0xff, i & 0xff));
            i += 1;
        }
        let name = format!("prefix{nl}lens");
        let _ = writeln!(
            policy,
            "[[set]]\nname = \"{name}\"\ntype = \"prefix\"\nsize = 1000\nelements = {}\n",
            toml_list(&els)
        );
        cases.push(LCase {
            kind: KeyType::Prefix,
            size: Some(1000),
            v6: Some(false),
            stages: format!("[[chain.select]]\nkind = \"src\"\nset = \"{name}\"\n"),
            mark: false,
            lens: Some(nl),
        });
    }
}

/// A `set_mark` from an addr map keyed by the source against a literal
/// `set_mark`, for every size of `sizes(Addr)`: the map's lookup in an
/// actor; the maps' TOML into `policy`.
fn mark_cases(quick: bool, policy: &mut String, cases: &mut Vec<LCase>) {
    let act = |mark: &str| format!("[[chain.act]]\nkind = \"set_mark\"\nmark = {mark}\n");
    cases.push(LCase {
        kind: KeyType::Addr,
        size: None,
        v6: None,
        stages: act("7"),
        mark: true,
        lens: None,
    });
    // both families' keys in one map: at least 2 elements
    for n in sizes(KeyType::Addr, quick).into_iter().map(|n| n.max(2)) {
        let keys = [
            packet_key(KeyType::Addr, false),
            packet_key(KeyType::Addr, true),
        ];
        let els: Vec<String> = elements(KeyType::Addr, n, &keys)
            .iter()
            .map(|k| format!("{k:?} = 7"))
            .collect();
        let name = format!("mark{n}");
        let _ = writeln!(
            policy,
            "[[map]]\nname = \"{name}\"\nkey = \"addr\"\nvalue = \"u32\"\nsize = {n}\nelements = {{ {} }}\n",
            els.join(", ")
        );
        cases.push(LCase {
            kind: KeyType::Addr,
            size: Some(n),
            v6: None,
            stages: act(&format!("{{ map = \"{name}\", key = \"src\" }}")),
            mark: true,
            lens: None,
        });
    }
}

const KINDS: [KeyType; 4] = [
    KeyType::Addr,
    KeyType::Prefix,
    KeyType::Port,
    KeyType::Subflow,
];

fn literal(kt: KeyType, v6: bool) -> String {
    let (s, d, p) = if v6 {
        ("fd00:1::1", "fd00:1::2", "fd00:1::/64")
    } else {
        ("10.1.0.1", "10.1.0.2", "10.1.0.0/24")
    };
    match kt {
        KeyType::Addr => format!("kind = \"ip_pair\"\nsrc = \"{s}\"\n"),
        KeyType::Prefix => format!("kind = \"src\"\naddr = \"{p}\"\n"),
        KeyType::Port => "kind = \"port\"\ndport = 5201\n".into(),
        KeyType::Subflow => format!(
            "kind = \"subflow\"\nsaddr = \"{s}\"\ndaddr = \"{d}\"\nsport = 40000\ndport = 5201\n"
        ),
        KeyType::Pair => unreachable!(),
    }
}

fn sizes(kt: KeyType, quick: bool) -> Vec<u32> {
    let big = if kt == KeyType::Port { 65_535 } else { 100_000 };
    if quick {
        vec![1, big]
    } else {
        vec![1, 1_000, big]
    }
}

fn set_name(kt: KeyType, n: u32, v6: Option<bool>) -> String {
    let f = match v6 {
        None => "",
        Some(false) => "v4",
        Some(true) => "v6",
    };
    format!("{kt}{n}{f}")
}

fn lookup(quick: bool, rounds: usize, repeat: u32, js: &mut Json) -> String {
    let mut policy = String::new();
    let mut cases: Vec<LCase> = Vec::new();
    // sets: of 1 element, one per family (the packet's key); larger ones
    // hold both families' keys and fillers
    for kt in KINDS {
        for n in sizes(kt, quick) {
            let fams: Vec<Option<bool>> = if n == 1 && kt != KeyType::Port {
                vec![Some(false), Some(true)]
            } else {
                vec![None]
            };
            for f in fams {
                let keys: Vec<&str> = match f {
                    Some(v6) => vec![packet_key(kt, v6)],
                    None if kt == KeyType::Port => vec![packet_key(kt, false)],
                    None => vec![packet_key(kt, false), packet_key(kt, true)],
                };
                let name = set_name(kt, n, f);
                let _ = writeln!(
                    policy,
                    "[[set]]\nname = \"{name}\"\ntype = \"{kt}\"\nsize = {n}\nelements = {}\n",
                    toml_list(&elements(kt, n, &keys))
                );
                let field = match kt {
                    KeyType::Addr | KeyType::Prefix => "src",
                    KeyType::Port => "port",
                    _ => "subflow",
                };
                cases.push(LCase {
                    kind: kt,
                    size: Some(n),
                    v6: f,
                    stages: format!("[[chain.select]]\nkind = \"{field}\"\nset = \"{name}\"\n"),
                    mark: false,
                    lens: None,
                });
            }
        }
        for v6 in [false, true] {
            if kt == KeyType::Port && v6 {
                continue;
            }
            cases.push(LCase {
                kind: kt,
                size: None,
                v6: if kt == KeyType::Port { None } else { Some(v6) },
                stages: format!("[[chain.select]]\n{}", literal(kt, v6)),
                mark: false,
                lens: None,
            });
        }
    }
    prefix_cases(&mut policy, &mut cases);
    mark_cases(quick, &mut policy, &mut cases);
    let hooks = [("xdp", "xdp"), ("tc-egress", "tc")];
    // device h * cases + i: case i on hook h; 2 * cases + h: `pass` alone
    let nc = cases.len();
    let bed = Bed::new("lk", nc * hooks.len() + hooks.len());
    let mut chains = String::new();
    let mut chain = |dev: usize, hook: &str, sel: &str| {
        let _ = writeln!(
            chains,
            "[[chain]]\nname = \"c{dev}\"\ndev = \"d{dev}\"\nhook = \"{hook}\"\n{sel}[[chain.act]]\nkind = \"pass\"\n"
        );
    };
    for (h, (hook, _)) in hooks.iter().enumerate() {
        for (i, c) in cases.iter().enumerate() {
            // XDP has no mark: `pass` alone stands in, never timed
            let xdp_mark = c.mark && *hook == "xdp";
            chain(h * nc + i, hook, if xdp_mark { "" } else { &c.stages });
        }
        chain(2 * nc + h, hook, "");
    }
    let text = format!("{chains}\n{policy}");
    let t = Instant::now();
    let p = Policy::parse(&text, "lookup.toml").expect("bench policy");
    bed.rt.apply(&p).expect("apply the lookup bench policy");
    println!(
        "lookup: applied {} chains and {} sets in {:.2} s",
        p.chains.len(),
        p.tables.len(),
        t.elapsed().as_secs_f64()
    );
    let sd = StateDir::open_shared(&bed.dir, true)
        .expect("state dir")
        .expect("applied");
    let st = sd.load().expect("state");
    let entry = |d: usize| -> (Prog, u16, &'static str) {
        let dname = format!("d{d}");
        let pt = st
            .points
            .iter()
            .find(|p| p.dev == dname)
            .expect("attach point");
        let fam = pt.hook.family();
        (
            Prog {
                fd: emptcp::runtime::hook_prog(&sd, pt).expect("the point's program"),
            },
            pt.chains[0].slots[0],
            fam,
        )
    };
    let pkts = [dss_segment(false), dss_segment(true)];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nset lookup vs literal selector (a selector + pass; BPF_PROG_TEST_RUN repeat {repeat}, {rounds} rounds)"
    );
    let _ = writeln!(
        out,
        "{:<4} {:<4} {:<8} {:<22} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "hook",
        "pkt",
        "kind",
        "selector",
        "ns min",
        "over base",
        "over pass",
        "vs lit min",
        "vs lit med"
    );
    for (h, (_, fam)) in hooks.iter().enumerate() {
        let base = {
            let obj = libbpf_rs::ObjectBuilder::default()
                .open_memory(emptcp::loader::object_bytes("baseline", fam).expect("baseline"))
                .expect("open baseline")
                .load()
                .expect("load baseline");
            Prog::from_obj(&obj)
        };
        let (pass, _, _) = entry(2 * nc + h);
        for (pi, pkt) in pkts.iter().enumerate() {
            let v6 = pi == 1;
            // the selectors of each key type, then set_mark (TC: XDP has no mark)
            let groups = KINDS
                .map(|k| (k, false))
                .into_iter()
                .chain([(KeyType::Addr, true)]);
            for (kt, mark) in groups.filter(|&(_, m)| !m || *fam == "tc") {
                // this packet's cases of kind kt: the literal first
                let mine: Vec<(usize, &LCase)> = cases
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.kind == kt && c.mark == mark && c.v6.is_none_or(|f| f == v6))
                    .collect();
                let mut order: Vec<(usize, &LCase)> = mine
                    .iter()
                    .filter(|(_, c)| c.size.is_none())
                    .copied()
                    .collect();
                order.extend(mine.iter().filter(|(_, c)| c.size.is_some()));
                let devs: Vec<usize> = order.iter().map(|(i, _)| h * nc + i).collect();
                let progs: Vec<(Prog, u16, &str)> = devs.iter().map(|d| entry(*d)).collect();
                let order: Vec<&LCase> = order.into_iter().map(|(_, c)| c).collect();
                // the selector must hit: its stage counts a hit per run (in
                // the walk's counter block, read with the slot's counters)
                let hit = emptcp::chain::COUNTER_NAMES
                    .iter()
                    .position(|n| *n == "hit")
                    .expect("hit counter");
                let hits = |d: usize, slot: u16| -> u64 {
                    let pt = st
                        .points
                        .iter()
                        .find(|p| p.dev == format!("d{d}"))
                        .expect("point");
                    emptcp::runtime::walkcount::PointCounters::of(&sd, pt)
                        .slot(slot)
                        .expect("the stage's counters")[hit]
                };
                for (((p, slot, _), c), d) in progs.iter().zip(&order).zip(&devs) {
                    let before = hits(*d, *slot);
                    p.run(pkt, 1);
                    let after = hits(*d, *slot);
                    assert_eq!(
                        after,
                        before + 1,
                        "{fam} {} {:?}: the selector did not hit",
                        kt,
                        c.size
                    );
                }
                let mut b = Vec::new();
                let mut ps = Vec::new();
                let mut t = vec![Vec::new(); progs.len()];
                for _ in 0..rounds {
                    b.push(base.run(pkt, repeat).0);
                    ps.push(pass.run(pkt, repeat).0);
                    for (i, (p, _, _)) in progs.iter().enumerate() {
                        t[i].push(p.run(pkt, repeat).0);
                    }
                }
                let lit = &t[0];
                for (i, c) in order.iter().enumerate() {
                    let d: Vec<f64> = t[i].iter().zip(lit).map(|(x, y)| x - y).collect();
                    let what = match (c.size, c.lens, mark) {
                        (None, _, _) => "literal".to_string(),
                        (Some(n), Some(l), _) if l > emptcp::abi::TAB_PFX_LENS => {
                            format!("{l} lens of {n}, trie")
                        }
                        (Some(n), Some(l), _) => format!("{l} lens of {n}"),
                        (Some(n), None, false) => format!("set of {n}"),
                        (Some(n), None, true) => format!("map of {n}"),
                    };
                    let kind = if mark {
                        "set_mark".to_string()
                    } else {
                        kt.to_string()
                    };
                    js["lookup"]
                        .as_array_mut()
                        .expect("array")
                        .push(serde_json::json!({
                            "hook": fam, "pkt": if v6 { "v6" } else { "v4" },
                            "kind": kind, "size": c.size, "lens": c.lens, "ns_min": min(&t[i]),
                            "over_base": min(&t[i]) - min(&b), "over_pass": min(&t[i]) - min(&ps),
                            "vs_literal_min": min(&t[i]) - min(lit), "vs_literal_median": median(&d),
                        }));
                    let _ = writeln!(
                        out,
                        "{:<4} {:<4} {:<8} {:<22} {:>8.1} {:>+10.1} {:>+10.1} {:>+10.1} {:>+10.1}",
                        fam,
                        if v6 { "v6" } else { "v4" },
                        kind,
                        what,
                        min(&t[i]),
                        min(&t[i]) - min(&b),
                        min(&t[i]) - min(&ps),
                        min(&t[i]) - min(lit),
                        median(&d)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "over base = min(chain) - min(empty program); over pass = min(chain) - min(the chain \
         without its selector: the selector's own cost); vs lit = the set chain minus the literal \
         one (min - min; median of the paired differences); every selector hits (checked)."
    );
    out
}

// --- apply ---------------------------------------------------------------

fn summary(v: &[f64]) -> String {
    let mx = v.iter().copied().fold(0.0, f64::max);
    format!("{:.3} [{:.3}..{:.3}]", median(v), min(v), mx)
}

/// A policy with a set and a map of `n` addresses each; one chain uses both.
fn big_policy(n: u32) -> String {
    let addrs = elements(KeyType::Addr, n, &[]);
    let mut map = String::with_capacity(addrs.len() * 28);
    map.push('{');
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            map.push(',');
        }
        let _ = write!(map, "\"{a}\" = {}", i + 1);
    }
    map.push('}');
    format!(
        "[[set]]\nname = \"big\"\ntype = \"addr\"\nsize = 100000\nelements = {}\n\n\
         [[map]]\nname = \"marks\"\nkey = \"addr\"\nvalue = \"u32\"\nsize = 100000\nelements = {map}\n\n\
         [[chain]]\nname = \"big\"\ndev = \"d0\"\nhook = \"tc-egress\"\n\
         [[chain.select]]\nkind = \"src\"\nset = \"big\"\n\
         [[chain.act]]\nkind = \"set_mark\"\nmark = {{ map = \"marks\", key = \"src\" }}\n",
        toml_list(&addrs)
    )
}

fn apply(rounds: usize, js: &mut Json) -> String {
    let bin = env!("CARGO_BIN_EXE_emptcp");
    let bed = Bed::new("ap", 1);
    let tmp = std::env::temp_dir().join(format!("emptcp-tables-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let files: Vec<(String, PathBuf)> = [0u32, 100_000]
        .iter()
        .map(|n| {
            let f = tmp.join(format!("apply-{n}.toml"));
            std::fs::write(&f, big_policy(*n)).expect("write policy");
            let what = if *n == 0 {
                "empty set + empty map".to_string()
            } else {
                "100,000-element set + 100,000-element map".to_string()
            };
            (what, f)
        })
        .collect();
    // per file: fresh apply, then re-apply of the same file
    let mut t = vec![(Vec::new(), Vec::new()); files.len()];
    for r in 0..rounds {
        for k in 0..files.len() {
            let i = if r % 2 == 0 { k } else { files.len() - 1 - k };
            let f = files[i].1.to_str().expect("utf-8 path");
            bed.reset();
            t[i].0.push(bed.cli(bin, &["apply", f]));
            t[i].1.push(bed.cli(bin, &["apply", f]));
        }
    }
    bed.reset();
    let _ = std::fs::remove_dir_all(&tmp);
    js["apply"] = serde_json::json!({
        "what": "emptcp apply (CLI) wall seconds: fresh state, then the same file again",
        "empty": {"fresh": t[0].0, "reapply": t[0].1},
        "100k_set_100k_map": {"fresh": t[1].0, "reapply": t[1].1},
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n`emptcp apply` wall time, one tc-egress chain (src in set + set_mark from map), {rounds} rounds, \
         seconds median [min..max]"
    );
    for (i, (what, _)) in files.iter().enumerate() {
        let _ = writeln!(
            out,
            "{what:<44} fresh {}   re-apply {}",
            summary(&t[i].0),
            summary(&t[i].1)
        );
    }
    let d = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let _ = writeln!(
        out,
        "{:<44} fresh {}   re-apply {}",
        "the 200,000 elements' share (paired diff.)",
        summary(&d(&t[1].0, &t[0].0)),
        summary(&d(&t[1].1, &t[0].1))
    );
    out
}

// --- element updates ------------------------------------------------------

fn update(rounds: usize, js: &mut Json) -> String {
    let bin = env!("CARGO_BIN_EXE_emptcp");
    let bed = Bed::new("up", 1);
    let n = 100_000u32;
    let text = "[[set]]\nname = \"upd\"\ntype = \"addr\"\nsize = 200000\n\n\
                [[chain]]\nname = \"upd\"\ndev = \"d0\"\nhook = \"tc-egress\"\n\
                [[chain.select]]\nkind = \"src\"\nset = \"upd\"\n[[chain.act]]\nkind = \"pass\"\n";
    bed.rt
        .apply(&Policy::parse(text, "update.toml").expect("policy"))
        .expect("apply the update bench policy");
    let strs = elements(KeyType::Addr, n, &[]);
    let raw: Vec<(Vec<u8>, u64)> = strs
        .iter()
        .map(|s| (tables::parse_key(KeyType::Addr, s).expect("key"), 1))
        .collect();
    let extra: Vec<(Vec<u8>, u64)> = (0..100u32)
        .map(|i| {
            let k = tables::parse_key(KeyType::Addr, &format!("13.0.0.{}", i + 1)).expect("key");
            (k, 1)
        })
        .collect();
    let tmp = std::env::temp_dir().join(format!("emptcp-tables-up-{}", std::process::id()));
    std::fs::write(&tmp, strs.join("\n") + "\n").expect("element file");
    let f = tmp.to_str().expect("utf-8 path");
    let flush = || bed.rt.table_flush("upd", Some("set")).expect("flush");
    // elements/s: one call of 100,000; 100 calls of 1,000; and seconds per
    // call adding one element to an empty set and to a set of 100,000
    let mut lib1 = Vec::new();
    let mut lib1k = Vec::new();
    let mut one_empty = Vec::new();
    let mut one_full = Vec::new();
    let mut cli = Vec::new();
    let mut cli_one_empty = Vec::new();
    let mut cli_one_full = Vec::new();
    for _ in 0..rounds {
        flush();
        let t = Instant::now();
        for e in &extra[..10] {
            bed.rt
                .table_add_raw("upd", std::slice::from_ref(e))
                .expect("add 1");
        }
        one_empty.push(t.elapsed().as_secs_f64() / 10.0);
        cli_one_empty.push(bed.cli(bin, &["set", "add", "upd", "13.0.1.1"]));
        flush();
        let t = Instant::now();
        bed.rt.table_add_raw("upd", &raw).expect("add 100k");
        lib1.push(f64::from(n) / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for e in &extra[10..20] {
            bed.rt
                .table_add_raw("upd", std::slice::from_ref(e))
                .expect("add 1");
        }
        one_full.push(t.elapsed().as_secs_f64() / 10.0);
        cli_one_full.push(bed.cli(bin, &["set", "add", "upd", "13.0.1.1"]));
        flush();
        let t = Instant::now();
        for c in raw.chunks(1000) {
            bed.rt.table_add_raw("upd", c).expect("add 1k");
        }
        lib1k.push(f64::from(n) / t.elapsed().as_secs_f64());
        flush();
        cli.push(f64::from(n) / bed.cli(bin, &["set", "add", "upd", "-f", f]));
    }
    let _ = std::fs::remove_file(&tmp);
    js["update"] = serde_json::json!({
        "lib_1_call_of_100k_per_s": lib1, "lib_100_calls_of_1k_per_s": lib1k,
        "cli_file_100k_per_s": cli, "lib_1_element_empty_s": one_empty,
        "lib_1_element_into_100k_s": one_full, "cli_1_element_empty_s": cli_one_empty,
        "cli_1_element_into_100k_s": cli_one_full,
    });
    let r = |v: &[f64]| {
        let mx = v.iter().copied().fold(0.0, f64::max);
        format!("{:>9.0} [{:.0}..{:.0}]", median(v), min(v), mx)
    };
    let us = |v: &[f64]| {
        let v: Vec<f64> = v.iter().map(|x| x * 1e6).collect();
        let mx = v.iter().copied().fold(0.0, f64::max);
        format!("{:>9.0} [{:.0}..{:.0}]", median(&v), min(&v), mx)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nelement updates, set of addresses (size 200,000), {rounds} rounds, median [min..max]"
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "table_add_raw, 1 call of 100,000: elements/s",
        r(&lib1)
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "table_add_raw, 100 calls of 1,000: elements/s",
        r(&lib1k)
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "`emptcp set add -f` 100,000 lines: elements/s",
        r(&cli)
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "table_add_raw of 1 element, set empty: us/call",
        us(&one_empty)
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "table_add_raw of 1 element, set of 100,000: us/call",
        us(&one_full)
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "`emptcp set add` 1 element, set empty: us (process)",
        us(&cli_one_empty)
    );
    let _ = writeln!(
        out,
        "{:<58} {}",
        "`emptcp set add` 1 element, set of 100,000: us (process)",
        us(&cli_one_full)
    );
    out
}

// --- memory ----------------------------------------------------------------

/// `memlock:` of a map (its own estimate of its memory) from fdinfo.
fn memlock(fd: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// A memory cgroup (v1) of our own, to read the kernel memory charged to
/// the maps this process creates. None when there is none to make.
struct Memcg {
    dir: PathBuf,
    back: PathBuf,
}

impl Memcg {
    fn new() -> Option<Memcg> {
        let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = cg.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, c, p) = (it.next()?, it.next()?, it.next()?);
            (c == "memory").then(|| p.trim_start_matches('/').to_owned())
        })?;
        let back = Path::new("/sys/fs/cgroup/memory").join(rel);
        let dir = back.join(format!("emptcp-tables-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        if std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).is_err() {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        let m = Memcg { dir, back };
        m.dir
            .join("memory.kmem.usage_in_bytes")
            .exists()
            .then_some(m)
    }
    fn kmem(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.kmem.usage_in_bytes"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.back.join("cgroup.procs"),
            std::process::id().to_string(),
        );
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn memory(js: &mut Json) -> String {
    let cg = Memcg::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nkernel memory per element (a set; a map's 8-byte value is the same slot), bytes"
    );
    let _ = writeln!(
        out,
        "{:<8} {:>6} {:>8} {:>12} {:>11} {:>12} {:>11}",
        "type", "key B", "elements", "memlock", "memlock/el", "memcg kmem", "kmem/el"
    );
    let mut keep = Vec::new();
    for kt in KeyType::ALL {
        let big = if kt == KeyType::Port { 65_535 } else { 100_000 };
        let mut prev: Option<(u32, u64, u64)> = None;
        for n in [1_000u32, big] {
            let def = TableDef {
                name: format!("mem{kt}"),
                key: kt,
                value: None,
                size: n,
                netns: None,
            };
            let elems: Vec<(Vec<u8>, u64)> = elements(kt, n, &[packet_key(kt, false)])
                .iter()
                .map(|s| (tables::parse_key(kt, s).expect("key"), 1))
                .collect();
            let k0 = cg.as_ref().map(|c| c.kmem()).unwrap_or(0);
            let m = tables::build(&def, &elems).expect("build table");
            let k1 = cg.as_ref().map(|c| c.kmem()).unwrap_or(0);
            let ml: u64 = m.maps().map(|m| memlock(m.as_fd().as_raw_fd())).sum();
            let kmem = k1.saturating_sub(k0);
            let _ = writeln!(
                out,
                "{:<8} {:>6} {:>8} {:>12} {:>11.1} {:>12} {:>11}",
                kt.to_string(),
                kt.key_size(),
                n,
                ml,
                ml as f64 / f64::from(n),
                if cg.is_some() {
                    kmem.to_string()
                } else {
                    "-".into()
                },
                if cg.is_some() {
                    format!("{:.1}", kmem as f64 / f64::from(n))
                } else {
                    "-".into()
                },
            );
            if let Some((pn, pml, pk)) = prev {
                let dn = f64::from(n - pn);
                let _ = writeln!(
                    out,
                    "{:<8} {:>6} {:>8} {:>12} {:>11.1} {:>12} {:>11}",
                    "",
                    "",
                    "marginal",
                    "",
                    (ml as f64 - pml as f64) / dn,
                    "",
                    if cg.is_some() {
                        format!("{:.1}", (kmem as f64 - pk as f64) / dn)
                    } else {
                        "-".into()
                    },
                );
            }
            js["memory"]
                .as_array_mut()
                .expect("array")
                .push(serde_json::json!({
                    "type": kt.to_string(), "key_bytes": kt.key_size(), "elements": n,
                    "memlock": ml, "memcg_kmem": cg.as_ref().map(|_| kmem),
                }));
            prev = Some((n, ml, kmem));
            keep.push(m);
        }
    }
    let _ = writeln!(
        out,
        "memlock: the map's own figure (fdinfo); memcg kmem: kernel memory charged to this \
         process's memory cgroup while the table was built{}",
        if cg.is_some() {
            ""
        } else {
            " (no memory cgroup here: not measured)"
        }
    );
    drop(keep);
    out
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("tables benchmark: needs root; SKIPPED");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<String> = arg(&args, "--only");
    let json_out: Option<String> = arg(&args, "--json");
    let repeat: u32 = arg(&args, "--repeat").unwrap_or(if quick { 200_000 } else { 1_000_000 });
    let rounds: usize = arg(&args, "--rounds").unwrap_or(if quick { 5 } else { 9 });
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);
    let harden = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_harden")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    println!(
        "emptcp tables: kernel {}, bpf_jit_harden={harden}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let mut out = String::new();
    let mut js = serde_json::json!({"lookup": [], "memory": []});
    if want("lookup") {
        out += &lookup(quick, rounds, repeat, &mut js);
    }
    if want("apply") {
        out += &apply(if quick { 3 } else { rounds.min(7) }, &mut js);
    }
    if want("update") {
        out += &update(if quick { 3 } else { rounds.min(7) }, &mut js);
    }
    if want("memory") {
        out += &memory(&mut js);
    }
    print!("{out}");
    if let Some(f) = json_out {
        std::fs::write(&f, serde_json::to_string_pretty(&js).expect("json") + "\n")
            .expect("write json");
        println!("wrote {f}");
    }
}
