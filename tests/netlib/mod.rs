//! Helpers of the end-to-end tests: throw-away network namespaces joined by
//! two veth pairs, real MPTCP transfers driven from Rust threads, and
//! readers of the kernel's view (`ss`, `nstat`, `ip link`, bpftool, tcx
//! queries). Everything a test creates is named `<pid>-<counter>` and goes
//! away in `Drop`, also when the test panics.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::TryRecvError;
use std::sync::{mpsc, Once};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use serde_json::Value;

pub mod wire;

/// The CLI under test.
pub const EMPTCP: &str = env!("CARGO_BIN_EXE_emptcp");
/// Linux's IPPROTO_MPTCP.
pub const IPPROTO_MPTCP: i32 = 262;
/// TCP port of the test server (each testbed has its own namespaces).
pub const PORT: u16 = 5201;
/// The server writes this much, every `SEND_GAP`.
pub const CHUNK: usize = 16384;
pub const SEND_GAP: Duration = Duration::from_millis(5);

const CMD_TIMEOUT: Duration = Duration::from_secs(30);
const BED_PREFIX: &str = "emptcp-e2e-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
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

/// Whether the running kernel has MPTCP (CONFIG_MPTCP: the net.mptcp
/// sysctls exist).
pub fn kernel_has_mptcp() -> bool {
    Path::new("/proc/sys/net/mptcp").exists()
}

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Non-empty stderr lines. On a kernel without MPTCP, less the warning
    /// every `apply` there prints about it (the tests of one-line errors
    /// count the rest; tc_egress_set_backup_wire_v4 checks the warning).
    pub fn stderr_lines(&self) -> Vec<&str> {
        let no_mptcp = !kernel_has_mptcp();
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !(no_mptcp
                    && l.starts_with("emptcp: warning: ")
                    && l.contains("no net.mptcp sysctls"))
            })
            .collect()
    }
    /// Panics with everything the command said unless it succeeded.
    pub fn expect_ok(self) -> Out {
        assert!(
            self.ok(),
            "`{}` failed ({:?})\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a command with a deadline; the child is killed when it overruns.
pub fn try_run_env(
    prog: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Out, String> {
    let cmdline = format!("{prog} {}", args.join(" "));
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{cmdline}`: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(o)) => Ok(Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            cmdline,
        }),
        Ok(Err(e)) => Err(format!("`{cmdline}`: {e}")),
        Err(_) => {
            // SAFETY: our own child, not yet reaped (its waiter is blocked).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(format!("`{cmdline}` did not finish within {timeout:?}"))
        }
    }
}

/// Runs a command (30 s deadline); panics only if it cannot run or hangs.
pub fn run(prog: &str, args: &[&str]) -> Out {
    try_run_env(prog, args, &[], CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn sh(prog: &str, args: &[&str]) -> String {
    run(prog, args).expect_ok().stdout
}

/// Runs a command inside a named network namespace (`ip netns exec`).
pub fn ns_run(ns: &str, prog: &str, args: &[&str]) -> Out {
    let mut a = vec!["netns", "exec", ns, prog];
    a.extend_from_slice(args);
    run("ip", &a)
}

/// Moves the calling thread (only it) into a named network namespace.
pub fn enter_netns(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
    setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))
}

/// Runs `f` on a fresh thread inside `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns)?;
        f()
    })
    .join()
    .map_err(|_| "netns thread panicked".to_owned())?
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
                    CMD_TIMEOUT,
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
                let _ = try_run_env("ip", &["netns", "del", &name], &[], CMD_TIMEOUT);
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
    made_ns: Vec<String>,
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
        bed
    }

    fn add_ns(&mut self, ns: &str) {
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
    fn addr_up(&self, ns: &str, dev: &str, cidr: &str) {
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
    try_run_env(EMPTCP, &a, &[("EMPTCP_STATE_DIR", &d)], CMD_TIMEOUT)
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
        CMD_TIMEOUT,
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
            match try_run_env("ip", &["netns", "del", ns], &[], CMD_TIMEOUT) {
                Ok(o) if o.ok() => {}
                Ok(o) => eprintln!("e2e cleanup: ip netns del {ns}: {}", o.stderr.trim()),
                Err(e) => eprintln!("e2e cleanup: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

// ---------------------------------------------------------------- traffic

/// Byte `k` of the stream: a pattern that catches moved or lost bytes.
fn pattern_byte(k: u64) -> u8 {
    (k % 251) as u8
}

fn sockaddr(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn last_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// An MPTCP stream socket of the family of `sa`.
fn mptcp_socket(sa: &SocketAddr) -> Result<i32, String> {
    let af = if sa.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(af, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, IPPROTO_MPTCP) };
    if fd < 0 {
        return Err(last_err("socket(IPPROTO_MPTCP)"));
    }
    Ok(fd)
}

fn set_timeout_opt(fd: i32, opt: i32, d: Duration) -> Result<(), String> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    };
    // SAFETY: tv outlives the call; size matches.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as _,
        )
    };
    if r < 0 {
        return Err(last_err("setsockopt"));
    }
    Ok(())
}

/// An MPTCP listener on `bind` (SO_REUSEADDR), in the caller's namespace.
pub fn mptcp_listen(bind: SocketAddr) -> Result<TcpListener, String> {
    let fd = mptcp_socket(&bind)?;
    // SAFETY: fd is a fresh socket we own; TcpListener closes it on drop.
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value outlives the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as _,
        )
    };
    let (ss, len) = sockaddr(&bind);
    // SAFETY: ss/len describe a valid sockaddr.
    if unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) } < 0 {
        return Err(last_err("bind"));
    }
    // SAFETY: plain syscall on our fd.
    if unsafe { libc::listen(fd, 8) } < 0 {
        return Err(last_err("listen"));
    }
    Ok(l)
}

fn mptcp_connect(dst: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    mptcp_connect_from(None, dst, timeout)
}

/// An MPTCP connection to `dst`, from `src` when given (bound before
/// connecting, port chosen by the kernel), in the caller's namespace.
pub fn mptcp_connect_from(
    src: Option<IpAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let fd = mptcp_socket(&dst)?;
    // SAFETY: fresh socket we own; TcpStream closes it on drop.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    // SO_SNDTIMEO bounds connect() on Linux
    set_timeout_opt(fd, libc::SO_SNDTIMEO, timeout)?;
    if let Some(src) = src {
        let (ss, len) = sockaddr(&SocketAddr::new(src, 0));
        // SAFETY: ss/len describe a valid sockaddr.
        if unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) } < 0 {
            return Err(last_err(&format!("bind {src}")));
        }
    }
    let (ss, len) = sockaddr(&dst);
    // SAFETY: ss/len describe a valid sockaddr.
    if unsafe { libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) } < 0 {
        return Err(last_err(&format!("connect {dst}")));
    }
    Ok(s)
}

/// A running transfer: the server (namespace `b`) writes CHUNK bytes every
/// SEND_GAP for `duration` (or until `stop`), then keeps the connection
/// open until `finish` (so `ss` still shows the subflows); the client
/// (namespace `a`) reads until EOF and checks every byte.
pub struct Transfer {
    pub started: Instant,
    pub duration: Duration,
    sent_rx: mpsc::Receiver<Result<u64, String>>,
    sent: Option<u64>,
    stop_tx: Option<mpsc::Sender<()>>,
    close_tx: Option<mpsc::Sender<()>>,
    client: Option<thread::JoinHandle<Result<u64, String>>>,
    server: Option<thread::JoinHandle<Result<(), String>>>,
}

/// What a transfer moved.
#[derive(Debug, Clone, Copy)]
pub struct TransferResult {
    pub sent: u64,
    pub received: u64,
}

fn server_body(
    listener: TcpListener,
    duration: Duration,
    gap: Duration,
    sent_tx: &mpsc::Sender<Result<u64, String>>,
    stop_rx: mpsc::Receiver<()>,
    close_rx: mpsc::Receiver<()>,
) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("server: no connection within 10 s".into());
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let pat: Vec<u8> = (0..(CHUNK as u64 + 251)).map(pattern_byte).collect();
    let start = Instant::now();
    let mut sent: u64 = 0;
    // a stop message or a dropped Transfer ends the writing early
    while start.elapsed() < duration && matches!(stop_rx.try_recv(), Err(TryRecvError::Empty)) {
        let off = (sent % 251) as usize;
        s.write_all(&pat[off..off + CHUNK])
            .map_err(|e| format!("server write after {sent} bytes: {e}"))?;
        sent += CHUNK as u64;
        if !gap.is_zero() {
            thread::sleep(gap);
        }
    }
    let _ = sent_tx.send(Ok(sent));
    // keep the connection (and its subflows) until the test has looked
    let _ = close_rx.recv_timeout(Duration::from_secs(60));
    drop(s);
    Ok(())
}

fn client_body(dst: SocketAddr) -> Result<u64, String> {
    let mut s = mptcp_connect(dst, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    let mut got: u64 = 0;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("client read after {got} bytes: {e}")),
        };
        for (i, b) in buf[..n].iter().enumerate() {
            if *b != pattern_byte(got + i as u64) {
                return Err(format!(
                    "client: wrong byte at stream offset {}",
                    got + i as u64
                ));
            }
        }
        got += n as u64;
    }
}

impl Transfer {
    /// Starts server and client; returns once the client is connecting.
    /// The server writes `CHUNK` bytes every `SEND_GAP`.
    pub fn start(bed: &Testbed, duration: Duration) -> Transfer {
        Transfer::start_paced(bed, duration, SEND_GAP)
    }

    /// Like `start`, but the server writes as fast as the connection takes.
    pub fn start_bulk(bed: &Testbed, duration: Duration) -> Transfer {
        Transfer::start_paced(bed, duration, Duration::ZERO)
    }

    /// Like `start`, with `gap` between the server's writes (zero: none).
    pub fn start_paced(bed: &Testbed, duration: Duration, gap: Duration) -> Transfer {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (sent_tx, sent_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let (close_tx, close_rx) = mpsc::channel();
        let bind = SocketAddr::new(
            match bed.fam {
                Family::V4 => "0.0.0.0".parse().unwrap(),
                Family::V6 => "::".parse().unwrap(),
            },
            PORT,
        );
        let ns_b = bed.b.clone();
        let server = thread::spawn(move || {
            let r = enter_netns(&ns_b).and_then(|()| mptcp_listen(bind));
            let listener = match r {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let r = server_body(listener, duration, gap, &sent_tx, stop_rx, close_rx);
            if let Err(e) = &r {
                let _ = sent_tx.send(Err(e.clone()));
            }
            r
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("server setup: {e}"),
            Err(_) => panic!("server did not come up"),
        }
        let ns_a = bed.a.clone();
        let dst = SocketAddr::new(bed.server_addr(), PORT);
        let client = thread::spawn(move || {
            enter_netns(&ns_a)?;
            client_body(dst)
        });
        Transfer {
            started: Instant::now(),
            duration,
            sent_rx,
            sent: None,
            stop_tx: Some(stop_tx),
            close_tx: Some(close_tx),
            client: Some(client),
            server: Some(server),
        }
    }

    /// True once the server has written everything.
    pub fn done_sending(&mut self) -> bool {
        if self.sent.is_some() {
            return true;
        }
        match self.sent_rx.try_recv() {
            Ok(Ok(n)) => {
                self.sent = Some(n);
                true
            }
            Ok(Err(e)) => panic!("transfer failed: {e}"),
            Err(_) => false,
        }
    }

    /// Tells the server to stop writing now (before `duration` is over).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until the server has written everything (connection still open).
    pub fn wait_sent(&mut self) -> u64 {
        if let Some(n) = self.sent {
            return n;
        }
        match self
            .sent_rx
            .recv_timeout(self.duration + Duration::from_secs(30))
        {
            Ok(Ok(n)) => {
                self.sent = Some(n);
                n
            }
            Ok(Err(e)) => panic!("transfer failed: {e}"),
            Err(e) => panic!("transfer did not finish sending: {e}"),
        }
    }

    /// Closes the connection and waits for both ends.
    pub fn finish(mut self) -> TransferResult {
        let sent = self.wait_sent();
        self.close_tx.take();
        let received = self
            .client
            .take()
            .expect("client")
            .join()
            .expect("client thread panicked")
            .unwrap_or_else(|e| panic!("client: {e}"));
        self.server
            .take()
            .expect("server")
            .join()
            .expect("server thread panicked")
            .unwrap_or_else(|e| panic!("server: {e}"));
        TransferResult { sent, received }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        // a panicking test: let the server close; both threads end on
        // their own timeouts, nothing waits for them here
        self.close_tx.take();
    }
}

/// The reverse of `Transfer`: the client (namespace `a`) writes CHUNK bytes
/// every SEND_GAP for `duration`, then keeps the connection open until
/// `finish`; the server (namespace `b`) reads until EOF and checks every
/// byte. The server's pure ACKs carry DSS data ACKs back to the client.
pub struct Upload {
    sent_rx: mpsc::Receiver<Result<u64, String>>,
    sent: Option<u64>,
    duration: Duration,
    close_tx: Option<mpsc::Sender<()>>,
    client: Option<thread::JoinHandle<Result<(), String>>>,
    server: Option<thread::JoinHandle<Result<u64, String>>>,
}

impl Upload {
    /// Starts server and client; returns once the client is connecting.
    pub fn start(bed: &Testbed, duration: Duration) -> Upload {
        Upload::start_from(bed, None, duration)
    }

    /// Like `start`, the client's socket bound to `src` when given.
    pub fn start_from(bed: &Testbed, src: Option<IpAddr>, duration: Duration) -> Upload {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (sent_tx, sent_rx) = mpsc::channel();
        let (close_tx, close_rx) = mpsc::channel::<()>();
        let bind = SocketAddr::new(
            match bed.fam {
                Family::V4 => "0.0.0.0".parse().unwrap(),
                Family::V6 => "::".parse().unwrap(),
            },
            PORT,
        );
        let ns_b = bed.b.clone();
        let server = thread::spawn(move || -> Result<u64, String> {
            let l = match enter_netns(&ns_b).and_then(|()| mptcp_listen(bind)) {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            l.set_nonblocking(true)
                .map_err(|e| format!("nonblocking: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err("server: no connection within 10 s".into());
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            s.set_nonblocking(false).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(60)))
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 65536];
            let mut got: u64 = 0;
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) => return Ok(got),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("server read after {got} bytes: {e}")),
                };
                for (i, b) in buf[..n].iter().enumerate() {
                    if *b != pattern_byte(got + i as u64) {
                        return Err(format!("server: wrong byte at offset {}", got + i as u64));
                    }
                }
                got += n as u64;
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("server setup: {e}"),
            Err(_) => panic!("server did not come up"),
        }
        let ns_a = bed.a.clone();
        let dst = SocketAddr::new(bed.server_addr(), PORT);
        let client = thread::spawn(move || -> Result<(), String> {
            let r: Result<(TcpStream, u64), String> = (|| {
                enter_netns(&ns_a)?;
                let mut s = mptcp_connect_from(src, dst, Duration::from_secs(5))?;
                s.set_write_timeout(Some(Duration::from_secs(10)))
                    .map_err(|e| e.to_string())?;
                let pat: Vec<u8> = (0..(CHUNK as u64 + 251)).map(pattern_byte).collect();
                let start = Instant::now();
                let mut sent: u64 = 0;
                while start.elapsed() < duration {
                    let off = (sent % 251) as usize;
                    s.write_all(&pat[off..off + CHUNK])
                        .map_err(|e| format!("client write after {sent} bytes: {e}"))?;
                    sent += CHUNK as u64;
                    thread::sleep(SEND_GAP);
                }
                Ok((s, sent))
            })();
            match r {
                Ok((s, sent)) => {
                    let _ = sent_tx.send(Ok(sent));
                    let _ = close_rx.recv_timeout(Duration::from_secs(60));
                    drop(s);
                    Ok(())
                }
                Err(e) => {
                    let _ = sent_tx.send(Err(e.clone()));
                    Err(e)
                }
            }
        });
        Upload {
            sent_rx,
            sent: None,
            duration,
            close_tx: Some(close_tx),
            client: Some(client),
            server: Some(server),
        }
    }

    /// Waits until the client has written everything (connection still open).
    pub fn wait_sent(&mut self) -> u64 {
        if let Some(n) = self.sent {
            return n;
        }
        match self
            .sent_rx
            .recv_timeout(self.duration + Duration::from_secs(30))
        {
            Ok(Ok(n)) => {
                self.sent = Some(n);
                n
            }
            Ok(Err(e)) => panic!("upload failed: {e}"),
            Err(e) => panic!("upload did not finish sending: {e}"),
        }
    }

    /// Closes the connection and waits for both ends.
    pub fn finish(mut self) -> TransferResult {
        let sent = self.wait_sent();
        self.close_tx.take();
        self.client
            .take()
            .expect("client")
            .join()
            .expect("client thread panicked")
            .unwrap_or_else(|e| panic!("client: {e}"));
        let received = self
            .server
            .take()
            .expect("server")
            .join()
            .expect("server thread panicked")
            .unwrap_or_else(|e| panic!("server: {e}"));
        TransferResult { sent, received }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.close_tx.take();
    }
}

// ------------------------------------------------------- kernel's view

/// One TCP socket line of `ss -tni` with its detail line.
#[derive(Debug, Clone)]
pub struct Sock {
    pub state: String,
    pub local: String,
    pub peer: String,
    /// Letters after `tcp-ulp-mptcp flags:` (empty if not an MPTCP subflow).
    pub flags: String,
    pub detail: String,
}

impl Sock {
    pub fn peer_ip(&self) -> Option<IpAddr> {
        let p = self.peer.rsplit_once(':')?.0;
        p.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }
    /// A numeric `name:value` field of the detail line (0 when absent,
    /// as `ss` leaves out zero counters).
    pub fn field(&self, name: &str) -> u64 {
        let key = format!("{name}:");
        self.detail
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    pub fn is_subflow(&self) -> bool {
        self.detail.contains("tcp-ulp-mptcp")
    }
}

/// `ss -tni` in a namespace, parsed.
pub fn ss_tni(ns: &str) -> (Vec<Sock>, String) {
    let text = ns_run(ns, "ss", &["-tniH"]).expect_ok().stdout;
    let mut out: Vec<Sock> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                out.push(Sock {
                    state: f[0].to_owned(),
                    local: f[3].to_owned(),
                    peer: f[4].to_owned(),
                    flags: String::new(),
                    detail: String::new(),
                });
            }
        } else if let Some(s) = out.last_mut() {
            s.detail.push_str(line.trim());
            s.detail.push(' ');
        }
    }
    for s in &mut out {
        if let Some(rest) = s.detail.split("tcp-ulp-mptcp").nth(1) {
            if let Some(f) = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("flags:"))
            {
                s.flags = f.to_owned();
            }
        }
    }
    (out, text)
}

/// The server's subflow whose peer is `peer` (established only).
pub fn subflow_from(socks: &[Sock], peer: IpAddr) -> Option<&Sock> {
    socks
        .iter()
        .find(|s| s.state == "ESTAB" && s.is_subflow() && s.peer_ip() == Some(peer))
}

/// All counters of a namespace: `nstat -asz` (absolute, no history).
pub fn nstat(ns: &str) -> BTreeMap<String, u64> {
    let text = ns_run(ns, "nstat", &["-asz"]).expect_ok().stdout;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// One counter (0 when the kernel does not list it).
pub fn counter(ns: &str, name: &str) -> u64 {
    nstat(ns).get(name).copied().unwrap_or(0)
}

/// The MPTCP fallback counters (`MPTcpExt*Fallback*`).
pub fn fallback_counters(ns: &str) -> BTreeMap<String, u64> {
    nstat(ns)
        .into_iter()
        .filter(|(k, _)| k.starts_with("MPTcpExt") && k.contains("Fallback"))
        .collect()
}

/// XDP attach mode on a device (1 = native/driver, 2 = generic/skb,
/// 3 = offload), None when no XDP program is attached.
pub fn xdp_mode(ns: &str, dev: &str) -> Option<u64> {
    let out = sh("ip", &["-n", ns, "-j", "-d", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).expect("ip -j link");
    v[0].get("xdp").and_then(|x| x["mode"].as_u64())
}

/// Id of the XDP program attached to a device.
pub fn xdp_prog_id(ns: &str, dev: &str) -> Option<u64> {
    let out = sh("ip", &["-n", ns, "-j", "-d", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).expect("ip -j link");
    v[0].get("xdp").and_then(|x| x["prog"]["id"].as_u64())
}

/// Programs attached through tcx at a device's ingress or egress (asked
/// from the kernel: bpftool 7.1 does not list tcx).
///
/// On kernels without tcx (Linux < 6.6), where emptcp attaches clsact
/// filters instead, it counts the device's clsact bpf filters.
pub fn tcx_count(ns: &str, dev: &str, egress: bool) -> u32 {
    if !emptcp::features::get().tcx {
        let dir = if egress { "egress" } else { "ingress" };
        let f = run("tc", &["-n", ns, "filter", "show", "dev", dev, dir]);
        return f.stdout.matches("direct-action").count() as u32;
    }
    wire::tcx_prog_ids(ns, dev, egress).len() as u32
}

/// Panics unless nothing at all is attached to a device: no XDP program,
/// no tcx program, no tc (clsact) filter.
pub fn assert_nothing_attached(ns: &str, dev: &str) {
    assert_eq!(xdp_mode(ns, dev), None, "XDP program left on {dev}");
    assert_eq!(
        tcx_count(ns, dev, true),
        0,
        "tcx egress program left on {dev}"
    );
    assert_eq!(
        tcx_count(ns, dev, false),
        0,
        "tcx ingress program left on {dev}"
    );
    for dir in ["ingress", "egress"] {
        let f = run("tc", &["-n", ns, "filter", "show", "dev", dev, dir]);
        assert!(
            f.stdout.trim().is_empty(),
            "tc {dir} filter left on {dev}: {}",
            f.stdout
        );
    }
}

fn bpftool_json(args: &[&str]) -> Option<Value> {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let o = run("bpftool", &a);
    if !o.ok() {
        return None;
    }
    serde_json::from_str(&o.stdout).ok()
}

/// Ids of the kernel objects reachable from a state dir's pins.
#[derive(Debug, Default, Clone)]
pub struct BpfIds {
    pub progs: BTreeSet<u64>,
    pub maps: BTreeSet<u64>,
    pub links: BTreeSet<u64>,
    /// Names of the pinned maps, for messages.
    pub map_names: BTreeMap<u64, String>,
}

fn pinned_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                pinned_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Every program, map and link pinned under `dir`, plus the programs in
/// pinned program arrays and the maps those programs use. Maps are only
/// opened through their pins (see `object_exists`).
pub fn owned_ids(dir: &Path) -> BpfIds {
    let mut ids = BpfIds::default();
    let mut files = Vec::new();
    pinned_files(dir, &mut files);
    for f in files {
        let p = f.to_string_lossy().into_owned();
        if let Some(v) = bpftool_json(&["link", "show", "pinned", &p]) {
            ids.links.extend(v["id"].as_u64());
            ids.progs.extend(v["prog_id"].as_u64());
        } else if let Some(v) = bpftool_json(&["prog", "show", "pinned", &p]) {
            ids.progs.extend(v["id"].as_u64());
        } else if let Some(v) = bpftool_json(&["map", "show", "pinned", &p]) {
            if let Some(id) = v["id"].as_u64() {
                ids.maps.insert(id);
                ids.map_names
                    .insert(id, v["name"].as_str().unwrap_or("").to_owned());
            }
            if v["type"] == "prog_array" {
                if let Some(Value::Array(es)) = bpftool_json(&["map", "dump", "pinned", &p]) {
                    for e in es {
                        ids.progs.extend(e["formatted"]["value"].as_u64());
                    }
                }
            }
        }
    }
    for id in ids.progs.clone() {
        if let Some(v) = bpftool_json(&["prog", "show", "id", &id.to_string()]) {
            if let Some(Value::Array(m)) = v.get("map_ids") {
                ids.maps.extend(m.iter().filter_map(Value::as_u64));
            }
        }
    }
    ids
}

/// Whether the kernel still has a `prog`, `map` or `link` with this id.
///
/// Asked with BPF_*_GET_NEXT_ID, which takes no reference. Opening maps
/// by id (what `bpftool map show` does for every map) is avoided on
/// purpose: on this kernel a prog_array whose last user reference goes
/// while another GET_FD_BY_ID user reference comes and goes before the
/// deferred clear has run leaks for good (prog_array_map_clear takes a
/// map reference and schedules work that is already pending).
pub fn object_exists(kind: &str, id: u64) -> bool {
    let f = match kind {
        "prog" => libbpf_sys::bpf_prog_get_next_id,
        "map" => libbpf_sys::bpf_map_get_next_id,
        "link" => libbpf_sys::bpf_link_get_next_id,
        _ => panic!("unknown object kind {kind}"),
    };
    let Ok(start) = u32::try_from(id.saturating_sub(1)) else {
        return false;
    };
    let mut next: u32 = 0;
    // SAFETY: next is a valid out pointer for the call.
    let r = unsafe { f(start, &mut next) };
    r == 0 && u64::from(next) == id
}

/// Programs that use one of `maps`: "id name (maps ...)", for diagnostics.
pub fn progs_using(maps: &BTreeSet<u64>) -> Vec<String> {
    let o = run("bpftool", &["-j", "prog", "show"]);
    let Ok(Value::Array(v)) = serde_json::from_str::<Value>(&o.stdout) else {
        return vec!["(bpftool prog show failed)".into()];
    };
    v.iter()
        .filter(|p| {
            p["map_ids"].as_array().is_some_and(|m| {
                m.iter()
                    .filter_map(Value::as_u64)
                    .any(|id| maps.contains(&id))
            })
        })
        .map(|p| format!("{} {} (maps {})", p["id"], p["name"], p["map_ids"]))
        .collect()
}

/// Programs the kernel has loaded: id -> name (`bpftool prog show` opens
/// programs only, never maps).
pub fn loaded_progs() -> BTreeMap<u64, String> {
    for _ in 0..5 {
        let o = run("bpftool", &["-j", "prog", "show"]);
        // a program freed while bpftool lists makes it complain; what it
        // printed is still a valid list, else retry
        if let Ok(Value::Array(v)) = serde_json::from_str::<Value>(&o.stdout) {
            return v
                .iter()
                .filter_map(|x| {
                    let id = x["id"].as_u64()?;
                    Some((id, x["name"].as_str().unwrap_or("").to_owned()))
                })
                .collect();
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("bpftool -j prog show: no usable output");
}

/// Which of `ids` the kernel still has.
pub fn still_loaded(ids: &BpfIds) -> BpfIds {
    let keep = |kind: &str, s: &BTreeSet<u64>| -> BTreeSet<u64> {
        s.iter()
            .copied()
            .filter(|id| object_exists(kind, *id))
            .collect()
    };
    BpfIds {
        progs: keep("prog", &ids.progs),
        maps: keep("map", &ids.maps),
        links: keep("link", &ids.links),
        map_names: BTreeMap::new(),
    }
}

/// Names emptcp's XDP/TC programs carry (the C function names).
pub const PROG_NAMES: &[&str] = &[
    "emptcp_entry",
    "emptcp_walk_prog",
    "emptcp_walk_short",
    "ip_pair",
    "packet_type",
    "set_backup",
];

/// `emptcp show --json`, parsed.
pub fn show_json(bed: &Testbed) -> Value {
    let o = bed.emptcp(&["show", "--json"]).expect_ok();
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("show --json: {e}: {}", o.stdout))
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
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

/// Checks a finished transfer moved every byte.
pub fn assert_complete(r: TransferResult) {
    assert!(r.sent > 0, "nothing was sent");
    assert_eq!(
        r.received, r.sent,
        "client received {} of {} bytes",
        r.received, r.sent
    );
}
