//! Testbeds: the checks a test starts with (root, MPTCP in the kernel),
//! throw-away namespaces joined by veth pairs (direct, or through a router
//! namespace), a private `--state-dir`, and the RAII guard that removes all
//! of it, also when the test panics; what killed runs left is swept.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use serde_json::Value;

use super::*;

pub(super) const BED_PREFIX: &str = "emptcp-e2e-";

pub(super) static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// True when the tests can create namespaces, load BPF and make MPTCP
/// connections between namespaces; otherwise prints the visible skip line.
/// A kernel built without MPTCP (Debian 11's 5.10) cannot be an end host.
pub fn root_or_skip(test: &str) -> bool {
    if !root_only_or_skip(test) {
        return false;
    }
    if kernel_has_mptcp() {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: kernel without MPTCP ({test}: Linux {} has no net.mptcp)",
        emptcp::features::get().release
    );
    false
}

/// True when the tests can create namespaces and load BPF (tests that need
/// no MPTCP end hosts); otherwise prints the visible skip line.
pub fn root_only_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    // straight to fd 2: libtest captures eprintln! of passing tests
    let _ = writeln!(std::io::stderr(), "SKIPPED: needs root ({test})");
    false
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces and state dirs of earlier e2e runs whose process is
/// gone (a test killed before its Drop ran). Only our own naming pattern.
fn sweep_stale() {
    let dead = |name: &str| -> bool {
        name.strip_prefix(BED_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p != std::process::id() && !pid_alive(p))
    };
    if let Ok(rd) = std::fs::read_dir("/sys/fs/bpf") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let dir = e.path();
                let d = dir.to_string_lossy().into_owned();
                let _ = try_run_env(
                    EMPTCP,
                    &["--state-dir", &d, "detach", "--all"],
                    &[("EMPTCP_STATE_DIR", &d)],
                    *CMD_TIMEOUT,
                );
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("e2e: removed stale state dir {d}");
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            if dead(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = try_run_env("ip", &["netns", "del", &name], &[], *CMD_TIMEOUT);
                eprintln!("e2e: removed stale netns {name}");
            }
        }
    }
}

/// Address family of a testbed's MPTCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Two namespaces, client `a` and server `b`, joined by two veth pairs
/// (`x1a`<->`x1b`, `x2a`<->`x2b`), checksum offload off on all four ends,
/// MPTCP limits for two subflows. IPv4: the client has a `subflow`
/// endpoint on its second address (join 10.2.0.1 -> 10.1.0.2 via x2a).
/// IPv6: the server announces its second address (`signal`; join
/// fd00:2::1 -> fd00:2::2), because a device-bound IPv6 join to an
/// off-link address fails (MPJoinSynTxConnectErr).
/// Also a private `--state-dir` and a scratch directory for policies.
pub struct Testbed {
    pub tag: String,
    pub fam: Family,
    pub a: String,
    pub b: String,
    pub x1a: String,
    pub x1b: String,
    pub x2a: String,
    pub x2b: String,
    /// The router namespace of a routed testbed (`Testbed::routed`), with
    /// its ends of the four links: `r1a`/`r2a` face the client, `r1b`/`r2b`
    /// the server. Empty strings on a direct testbed.
    pub r: String,
    pub r1a: String,
    pub r2a: String,
    pub r1b: String,
    pub r2b: String,
    pub state_dir: PathBuf,
    pub tmp: PathBuf,
    /// Extra state dirs handed out by `another_state_dir`.
    extra_dirs: Vec<PathBuf>,
    pub(super) made_ns: Vec<String>,
}

impl Testbed {
    /// A fresh testbed; panics (after cleaning up) when setup fails.
    pub fn new(fam: Family) -> Testbed {
        Testbed::build(fam, false)
    }

    /// A middle-node testbed: client `a` — router `r` — server `b`, two
    /// links on each side (a:x1a<->r:r1a, a:x2a<->r:r2a, r:r1b<->b:x1b,
    /// r:r2b<->b:x2b), every link its own subnet, the router forwarding.
    /// The client joins from its second address (a `subflow` endpoint,
    /// routed out of x2a by a source rule) to the server's first address:
    /// subflow 1 runs x1a-r1a-r1b-x1b, subflow 2 x2a-r2a-r1b-x1b. Chains
    /// meant for the middle node go on the router's devices.
    pub fn routed(fam: Family) -> Testbed {
        Testbed::build(fam, true)
    }

    fn build(fam: Family, routed: bool) -> Testbed {
        SWEEP.call_once(sweep_stale);
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{pid}-{n}");
        let dev = |s: &str| {
            let d = format!("e{pid}n{n}{s}");
            assert!(d.len() <= 15, "device name {d} too long");
            d
        };
        let tmp = std::env::temp_dir().join(format!("{BED_PREFIX}{tag}"));
        let mut bed = Testbed {
            fam,
            a: format!("{BED_PREFIX}{tag}-A"),
            b: format!("{BED_PREFIX}{tag}-B"),
            x1a: dev("x1a"),
            x1b: dev("x1b"),
            x2a: dev("x2a"),
            x2b: dev("x2b"),
            r: if routed {
                format!("{BED_PREFIX}{tag}-R")
            } else {
                String::new()
            },
            r1a: if routed { dev("r1a") } else { String::new() },
            r2a: if routed { dev("r2a") } else { String::new() },
            r1b: if routed { dev("r1b") } else { String::new() },
            r2b: if routed { dev("r2b") } else { String::new() },
            state_dir: PathBuf::from(format!("/sys/fs/bpf/{BED_PREFIX}{tag}")),
            tmp,
            tag,
            extra_dirs: Vec::new(),
            made_ns: Vec::new(),
        };
        if routed {
            bed.setup_routed();
        } else {
            bed.setup();
        }
        bed.wait_links_up();
        bed
    }

    /// Waits (5 s at most) until every link end of the bed has carrier: a
    /// veth end that is up still reports NO-CARRIER for a moment, and an
    /// IPv6 probe sent then found no neighbour and timed out (seen with
    /// the direct IPv6 bed, before any program was attached).
    fn wait_links_up(&self) {
        let mut ends = vec![
            (&self.a, &self.x1a),
            (&self.a, &self.x2a),
            (&self.b, &self.x1b),
            (&self.b, &self.x2b),
        ];
        if !self.r1a.is_empty() {
            for d in [&self.r1a, &self.r2a, &self.r1b, &self.r2b] {
                ends.push((&self.r, d));
            }
        }
        for (ns, dev) in ends {
            let up = wait_for(std::time::Duration::from_secs(5), || {
                let o = run("ip", &["-n", ns, "-o", "link", "show", "dev", dev]).stdout;
                o.contains("state UP").then_some(())
            });
            assert!(up.is_some(), "{dev} in {ns}: no carrier after 5 s");
        }
    }

    pub(super) fn add_ns(&mut self, ns: &str) {
        sh("ip", &["netns", "add", ns]);
        self.made_ns.push(ns.to_owned());
        sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        // a kernel without MPTCP still serves tests of the middle node
        let mptcp = kernel_has_mptcp();
        if mptcp {
            ns_run(ns, "sysctl", &["-qw", "net.mptcp.enabled=1"]).expect_ok();
        }
        // no duplicate address detection on the links made next, link-local
        // addresses included: a tentative one delays neighbour discovery
        // across a routed hop by a second or more
        ns_run(
            ns,
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )
        .expect_ok();
        if !mptcp {
            return;
        }
        sh(
            "ip",
            &[
                "-n",
                ns,
                "mptcp",
                "limits",
                "set",
                "subflow",
                "2",
                "add_addr_accepted",
                "2",
            ],
        );
    }

    /// `ip addr add` + up + checksum offload off (veth trusts
    /// CHECKSUM_PARTIAL: without this broken checksums would pass).
    pub(super) fn addr_up(&self, ns: &str, dev: &str, cidr: &str) {
        let mut args = vec!["-n", ns, "addr", "add", cidr, "dev", dev];
        if self.fam == Family::V6 {
            args.push("nodad");
        }
        sh("ip", &args);
        sh("ip", &["-n", ns, "link", "set", dev, "up"]);
        ns_run(ns, "ethtool", &["-K", dev, "tx", "off"]).expect_ok();
    }

    fn setup_routed(&mut self) {
        std::fs::create_dir_all(&self.tmp).expect("scratch dir");
        let (a, b, r) = (self.a.clone(), self.b.clone(), self.r.clone());
        for ns in [&a, &r, &b] {
            self.add_ns(ns);
        }
        for (x, y, nx, ny) in [
            (&self.x1a, &self.r1a, &a, &r),
            (&self.x2a, &self.r2a, &a, &r),
            (&self.r1b, &self.x1b, &r, &b),
            (&self.r2b, &self.x2b, &r, &b),
        ] {
            sh(
                "ip",
                &[
                    "link", "add", x, "netns", nx, "type", "veth", "peer", "name", y, "netns", ny,
                ],
            );
        }
        // subnet k (1..4): host .1/::1 on the end side, router .254/::fe
        let (v6, len) = (
            self.fam == Family::V6,
            if self.fam == Family::V6 { "/64" } else { "/24" },
        );
        let host = |k: u8, h: u8| {
            if v6 {
                format!("fd00:{k}::{h:x}")
            } else {
                format!("10.{k}.0.{h}")
            }
        };
        let (gw, srv) = (254u8, 2u8);
        let links = [
            (&a, self.x1a.clone(), host(1, 1)),
            (&a, self.x2a.clone(), host(2, 1)),
            (&r, self.r1a.clone(), host(1, gw)),
            (&r, self.r2a.clone(), host(2, gw)),
            (&r, self.r1b.clone(), host(3, gw)),
            (&r, self.r2b.clone(), host(4, gw)),
            (&b, self.x1b.clone(), host(3, srv)),
            (&b, self.x2b.clone(), host(4, srv)),
        ];
        for (ns, dev, addr) in &links {
            self.addr_up(ns, dev, &format!("{addr}{len}"));
        }
        let fwd = if v6 {
            "net.ipv6.conf.all.forwarding=1"
        } else {
            "net.ipv4.ip_forward=1"
        };
        ns_run(&r, "sysctl", &["-qw", fwd]).expect_ok();
        let fam = if v6 { "-6" } else { "-4" };
        // defaults over link 1; the second address routes out of link 2
        for (ns, dev1, gw1, src2, dev2, gw2) in [
            (
                &a,
                &self.x1a,
                host(1, gw),
                host(2, 1),
                &self.x2a,
                host(2, gw),
            ),
            (
                &b,
                &self.x1b,
                host(3, gw),
                host(4, srv),
                &self.x2b,
                host(4, gw),
            ),
        ] {
            sh(
                "ip",
                &[
                    "-n", ns, fam, "route", "add", "default", "via", &gw1, "dev", dev1,
                ],
            );
            sh(
                "ip",
                &[
                    "-n", ns, fam, "route", "add", "default", "via", &gw2, "dev", dev2, "table",
                    "2",
                ],
            );
            sh(
                "ip",
                &["-n", ns, fam, "rule", "add", "from", &src2, "table", "2"],
            );
        }
        sh(
            "ip",
            &["-n", &a, "mptcp", "endpoint", "add", &host(2, 1), "subflow"],
        );
    }

    fn setup(&mut self) {
        std::fs::create_dir_all(&self.tmp).expect("scratch dir");
        let (a, b) = (self.a.clone(), self.b.clone());
        for ns in [&a, &b] {
            self.add_ns(ns);
        }
        for (da, db) in [
            (self.x1a.clone(), self.x1b.clone()),
            (self.x2a.clone(), self.x2b.clone()),
        ] {
            sh(
                "ip",
                &[
                    "link", "add", &da, "netns", &a, "type", "veth", "peer", "name", &db, "netns",
                    &b,
                ],
            );
        }
        let (c1, c2, s1, s2, len) = match self.fam {
            Family::V4 => ("10.1.0.1", "10.2.0.1", "10.1.0.2", "10.2.0.2", "/24"),
            Family::V6 => ("fd00:1::1", "fd00:2::1", "fd00:1::2", "fd00:2::2", "/64"),
        };
        for (ns, dev, addr) in [
            (&a, &self.x1a, c1),
            (&a, &self.x2a, c2),
            (&b, &self.x1b, s1),
            (&b, &self.x2b, s2),
        ] {
            self.addr_up(ns, dev, &format!("{addr}{len}"));
        }
        if !kernel_has_mptcp() {
            return;
        }
        match self.fam {
            Family::V4 => sh(
                "ip",
                &[
                    "-n", &a, "mptcp", "endpoint", "add", c2, "dev", &self.x2a, "subflow",
                ],
            ),
            Family::V6 => sh(
                "ip",
                &[
                    "-n", &b, "mptcp", "endpoint", "add", s2, "dev", &self.x2b, "signal",
                ],
            ),
        };
    }

    /// The server's address the client connects to.
    pub fn server_addr(&self) -> IpAddr {
        match (self.fam, self.r.is_empty()) {
            (Family::V4, true) => "10.1.0.2".parse().unwrap(),
            (Family::V6, true) => "fd00:1::2".parse().unwrap(),
            (Family::V4, false) => "10.3.0.2".parse().unwrap(),
            (Family::V6, false) => "fd00:3::2".parse().unwrap(),
        }
    }
    /// The client's address on the first link (initial subflow).
    pub fn client_addr1(&self) -> IpAddr {
        match self.fam {
            Family::V4 => "10.1.0.1".parse().unwrap(),
            Family::V6 => "fd00:1::1".parse().unwrap(),
        }
    }
    /// The client's address on the second link (joined subflow).
    pub fn client_addr2(&self) -> IpAddr {
        match self.fam {
            Family::V4 => "10.2.0.1".parse().unwrap(),
            Family::V6 => "fd00:2::1".parse().unwrap(),
        }
    }

    /// Writes a policy file into the scratch dir.
    pub fn policy(&self, name: &str, text: &str) -> PathBuf {
        let p = self.tmp.join(format!("{name}.toml"));
        std::fs::write(&p, text).expect("write policy");
        p
    }

    /// Runs the CLI with this testbed's state dir.
    pub fn emptcp(&self, args: &[&str]) -> Out {
        emptcp_in(&self.state_dir, args)
    }

    /// Another unique state dir, detached and removed with the testbed.
    pub fn another_state_dir(&mut self) -> PathBuf {
        let d = PathBuf::from(format!(
            "/sys/fs/bpf/{BED_PREFIX}{}x{}",
            self.tag,
            self.extra_dirs.len()
        ));
        self.extra_dirs.push(d.clone());
        d
    }
}

/// Runs the CLI on a given state dir (flag and environment agree).
pub fn emptcp_in(dir: &Path, args: &[&str]) -> Out {
    let d = dir.to_string_lossy().into_owned();
    let mut a = vec!["--state-dir", d.as_str()];
    a.extend_from_slice(args);
    try_run_env(EMPTCP, &a, &[("EMPTCP_STATE_DIR", &d)], *CMD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn cleanup_state_dir(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let d = dir.to_string_lossy().into_owned();
    match try_run_env(
        EMPTCP,
        &["--state-dir", &d, "detach", "--all"],
        &[("EMPTCP_STATE_DIR", &d)],
        *CMD_TIMEOUT,
    ) {
        Ok(o) if o.ok() => {}
        Ok(o) => eprintln!("e2e cleanup: `{}` failed: {}", o.cmdline, o.stderr.trim()),
        Err(e) => eprintln!("e2e cleanup: {e}"),
    }
    if dir.exists() {
        eprintln!("e2e cleanup: {d} still there after detach --all; removing the pins");
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // chains first (they need the namespaces), then the namespaces,
        // which take their veth devices with them
        cleanup_state_dir(&self.state_dir);
        for d in &self.extra_dirs {
            cleanup_state_dir(d);
        }
        for ns in self.made_ns.iter().rev() {
            match try_run_env("ip", &["netns", "del", ns], &[], *CMD_TIMEOUT) {
                Ok(o) if o.ok() => {}
                Ok(o) => eprintln!("e2e cleanup: ip netns del {ns}: {}", o.stderr.trim()),
                Err(e) => eprintln!("e2e cleanup: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// `emptcp show --json`, parsed.
pub fn show_json(bed: &Testbed) -> Value {
    let o = bed.emptcp(&["show", "--json"]).expect_ok();
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("show --json: {e}: {}", o.stdout))
}

/// Counter `counter` of the stages of `kind` in chain `chain`, from
/// `emptcp show --json`.
pub fn stage_counter(show: &Value, chain: &str, kind: &str, counter: &str) -> u64 {
    show.as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == chain)
        .flat_map(|c| c["stages"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["kind"] == kind)
        .filter_map(|s| s["counters"][counter].as_u64())
        .sum()
}
