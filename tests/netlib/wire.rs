//! The on-the-wire judge: whether a chain acts, seen from the packets
//! alone (never from emptcp's counters or its `show`).
//!
//! A chain "acts" when it drops what it selects. The chains these helpers
//! write select one TCP port and drop. A probe is a non-blocking TCP
//! connect() from namespace `a` to a port of the server (`b`) where nothing
//! listens: if the SYN (and the answer) pass, `b` answers RST and the
//! connect fails with ECONNREFUSED well under a millisecond; if either is
//! dropped, the connect is still pending after `PROBE_TIMEOUT`. Only the
//! connect result counts, so other traffic (IPv6 neighbour discovery,
//! router solicitations) cannot change a verdict. Many probes run at once
//! (one poll loop), so judging every port costs about one timeout.
//!
//! Also: testbed changes the drift tests need (a third namespace, a link
//! deleted and made again with the same names and addresses).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;

/// How long a connect may stay pending before its SYN counts as dropped.
/// A refused connect takes well under 1 ms on a veth; the first SYN is
/// resent only after 1 s, so nothing in between changes the outcome.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(60);
/// A "dropped" verdict the model did not expect is probed once more with
/// this timeout (a slow RST on a busy machine is not a drop).
pub const RECHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// What one probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// RST (or an accept): the SYN got through and so did the answer.
    Passed,
    /// Still connecting after the timeout: the SYN or its RST was dropped.
    Dropped,
    /// Any other connect error (errno), e.g. no route.
    Error(i32),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Passed => write!(f, "passed"),
            Verdict::Dropped => write!(f, "dropped"),
            Verdict::Error(e) => write!(f, "error: {}", std::io::Error::from_raw_os_error(*e)),
        }
    }
}

fn sockaddr_of(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    super::sockaddr(sa)
}

fn so_error(fd: i32) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err/len are valid out pointers of the right size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        err
    }
}

fn errno_verdict(e: i32) -> Verdict {
    match e {
        0 | libc::ECONNREFUSED => Verdict::Passed,
        e => Verdict::Error(e),
    }
}

/// Connects to every target at once from inside namespace `ns` (plain TCP,
/// non-blocking) and waits at most `timeout` in one poll loop. The result
/// is in the order of `targets`.
pub fn probe_from(ns: &str, targets: &[SocketAddr], timeout: Duration) -> Vec<Verdict> {
    let targets = targets.to_vec();
    in_netns(ns, move || {
        let mut fds: Vec<i32> = Vec::with_capacity(targets.len());
        let mut out: Vec<Option<Verdict>> = vec![None; targets.len()];
        let close_all = |fds: &[i32]| {
            for fd in fds {
                if *fd >= 0 {
                    // SAFETY: our own socket, closed once.
                    unsafe { libc::close(*fd) };
                }
            }
        };
        for (i, t) in targets.iter().enumerate() {
            let af = if t.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            // SAFETY: plain syscall.
            let fd = unsafe {
                libc::socket(
                    af,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_TCP,
                )
            };
            if fd < 0 {
                let e = last_err("socket");
                close_all(&fds);
                return Err(e);
            }
            fds.push(fd);
            let (ss, len) = sockaddr_of(t);
            // SAFETY: ss/len describe a valid sockaddr.
            let r = unsafe { libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) };
            if r == 0 {
                out[i] = Some(Verdict::Passed);
            } else {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e != libc::EINPROGRESS {
                    out[i] = Some(errno_verdict(e));
                }
            }
        }
        let end = Instant::now() + timeout;
        loop {
            let mut pfds: Vec<libc::pollfd> = Vec::new();
            let mut idx: Vec<usize> = Vec::new();
            for (i, fd) in fds.iter().enumerate() {
                if out[i].is_none() {
                    pfds.push(libc::pollfd {
                        fd: *fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    });
                    idx.push(i);
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if pfds.is_empty() || left.is_zero() {
                break;
            }
            let ms = left.as_millis().max(1) as libc::c_int;
            // SAFETY: pfds is a valid array of pollfd of this length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                close_all(&fds);
                return Err(format!("poll: {e}"));
            }
            for (p, i) in pfds.iter().zip(&idx) {
                if p.revents != 0 {
                    out[*i] = Some(errno_verdict(so_error(p.fd)));
                }
            }
        }
        close_all(&fds);
        Ok(out
            .into_iter()
            .map(|v| v.unwrap_or(Verdict::Dropped))
            .collect())
    })
    .unwrap_or_else(|e| panic!("probe from {ns}: {e}"))
}

/// The server's (`b`'s) address on link 1 or 2 of a direct testbed: a
/// probe to it leaves `a` by `x{link}a` and reaches `b` on `x{link}b`.
pub fn server_addr_on(bed: &Testbed, link: u8) -> IpAddr {
    match (bed.fam, link) {
        (Family::V4, 1) => "10.1.0.2".parse().unwrap(),
        (Family::V4, 2) => "10.2.0.2".parse().unwrap(),
        (Family::V6, 1) => "fd00:1::2".parse().unwrap(),
        (Family::V6, 2) => "fd00:2::2".parse().unwrap(),
        _ => panic!("no link {link} on a direct testbed"),
    }
}

/// Which end of a link a chain sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The client `a` (where probes start).
    A,
    /// The server `b` (where probes are refused).
    B,
}

/// An attach point of the two-link testbed that a probe crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Point {
    pub side: Side,
    pub link: u8,
    pub hook: &'static str,
}

impl Point {
    pub const fn new(side: Side, link: u8, hook: &'static str) -> Point {
        Point { side, link, hook }
    }
    pub fn ns<'a>(&self, bed: &'a Testbed) -> &'a str {
        match self.side {
            Side::A => &bed.a,
            Side::B => &bed.b,
        }
    }
    pub fn dev<'a>(&self, bed: &'a Testbed) -> &'a str {
        match (self.side, self.link) {
            (Side::A, 1) => &bed.x1a,
            (Side::A, 2) => &bed.x2a,
            (Side::B, 1) => &bed.x1b,
            (Side::B, 2) => &bed.x2b,
            _ => panic!("no link {}", self.link),
        }
    }
    /// True when the point sees the probe's SYN (a's egress, b's ingress);
    /// otherwise it sees the RST coming back.
    pub fn sees_syn(&self) -> bool {
        match self.side {
            Side::A => self.hook == "tc-egress",
            Side::B => self.hook != "tc-egress",
        }
    }
    /// The `port` selector key that picks a probe to port P here: `dport`
    /// on the SYN's way, `sport` on the RST's.
    pub fn port_key(&self) -> &'static str {
        if self.sees_syn() {
            "dport"
        } else {
            "sport"
        }
    }
    /// Short name for messages: `b:x1b/xdp`.
    pub fn label(&self) -> String {
        let s = match self.side {
            Side::A => "a",
            Side::B => "b",
        };
        format!("{s}:x{}{s}/{}", self.link, self.hook)
    }
}

/// The points the model tests use: where a probe's SYN passes.
pub const SYN_POINTS: [Point; 6] = [
    Point::new(Side::A, 1, "tc-egress"),
    Point::new(Side::B, 1, "tc-ingress"),
    Point::new(Side::B, 1, "xdp"),
    Point::new(Side::A, 2, "tc-egress"),
    Point::new(Side::B, 2, "tc-ingress"),
    Point::new(Side::B, 2, "xdp"),
];

/// Every point of the two links a probe crosses (SYN or RST way).
pub const ALL_POINTS: [Point; 12] = [
    Point::new(Side::A, 1, "tc-egress"),
    Point::new(Side::A, 1, "tc-ingress"),
    Point::new(Side::A, 1, "xdp"),
    Point::new(Side::B, 1, "tc-egress"),
    Point::new(Side::B, 1, "tc-ingress"),
    Point::new(Side::B, 1, "xdp"),
    Point::new(Side::A, 2, "tc-egress"),
    Point::new(Side::A, 2, "tc-ingress"),
    Point::new(Side::A, 2, "xdp"),
    Point::new(Side::B, 2, "tc-egress"),
    Point::new(Side::B, 2, "tc-ingress"),
    Point::new(Side::B, 2, "xdp"),
];

/// The policy text of one chain that drops probes to `port` at `point`.
pub fn drop_chain(bed: &Testbed, name: &str, point: Point, port: u16) -> String {
    format!(
        "[[chain]]\nname = \"{name}\"\ndev = \"{}\"\nhook = \"{}\"\nnetns = \"{}\"\n  \
         [[chain.select]]\n  kind = \"port\"\n  {} = {port}\n  \
         [[chain.act]]\n  kind = \"drop\"\n",
        point.dev(bed),
        point.hook,
        point.ns(bed),
        point.port_key()
    )
}

/// One expectation: a probe to `port` over `link` is dropped or passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expect {
    pub port: u16,
    pub link: u8,
    pub dropped: bool,
}

/// What a judgement found.
#[derive(Debug, Default)]
pub struct Judgement {
    /// "port P via link L: dropped, expected to pass" lines.
    pub mismatches: Vec<String>,
    /// Probes sent (rechecks included).
    pub probes: usize,
    /// Dropped-but-expected-to-pass probes that passed on the recheck.
    pub rechecked_ok: usize,
}

impl Judgement {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Probes every expectation at once from `a` and compares. A probe that
/// should pass but looked dropped is probed again with `RECHECK_TIMEOUT`
/// (a pass is always definite: the RST came back).
pub fn judge(bed: &Testbed, expects: &[Expect]) -> Judgement {
    let addr = |e: &Expect| SocketAddr::new(server_addr_on(bed, e.link), e.port);
    let targets: Vec<SocketAddr> = expects.iter().map(addr).collect();
    let got = probe_from(&bed.a, &targets, PROBE_TIMEOUT);
    let mut j = Judgement {
        probes: targets.len(),
        ..Default::default()
    };
    let slow: Vec<usize> = (0..expects.len())
        .filter(|&i| !expects[i].dropped && got[i] == Verdict::Dropped)
        .collect();
    let mut again: BTreeMap<usize, Verdict> = BTreeMap::new();
    if !slow.is_empty() {
        let t: Vec<SocketAddr> = slow.iter().map(|&i| targets[i]).collect();
        let v = probe_from(&bed.a, &t, RECHECK_TIMEOUT);
        j.probes += t.len();
        again.extend(slow.iter().copied().zip(v));
    }
    for (i, e) in expects.iter().enumerate() {
        let v = again.get(&i).copied().unwrap_or(got[i]);
        if again.contains_key(&i) && v == Verdict::Passed {
            j.rechecked_ok += 1;
        }
        let want = if e.dropped {
            Verdict::Dropped
        } else {
            Verdict::Passed
        };
        if v != want {
            j.mismatches.push(format!(
                "port {} via link {}: {v}, expected {}",
                e.port,
                e.link,
                if e.dropped { "dropped" } else { "to pass" }
            ));
        }
    }
    j
}

/// Expectations for `ports` over both links: dropped on link L exactly
/// when `acting` has that (port, link).
pub fn expect_both_links(
    ports: impl IntoIterator<Item = u16>,
    acting: &std::collections::BTreeSet<(u16, u8)>,
) -> Vec<Expect> {
    let mut v = Vec::new();
    for port in ports {
        for link in [1u8, 2] {
            v.push(Expect {
                port,
                link,
                dropped: acting.contains(&(port, link)),
            });
        }
    }
    v
}

// ------------------------------------------------------ testbed changes

impl Testbed {
    /// A further namespace owned by this testbed (deleted with it):
    /// loopback up, MPTCP on, no DAD. Its name ends in `-{suffix}`.
    pub fn extra_netns(&mut self, suffix: &str) -> String {
        let ns = format!("{BED_PREFIX}{}-{suffix}", self.tag);
        self.add_ns(&ns);
        ns
    }

    /// A device name of this testbed's pattern (`e<pid>n<k><suffix>`).
    pub fn dev_name(&self, suffix: &str) -> String {
        let (pid, n) = self.tag.split_once('-').expect("tag pid-n");
        let d = format!("e{pid}n{n}{suffix}");
        assert!(d.len() <= 15, "device name {d} too long");
        d
    }

    /// A veth pair `dev_x` (namespace `ns_x`, `addr_x`) <-> `dev_y`
    /// (`ns_y`, `addr_y`), both up, checksum offload off (like the
    /// testbed's own links). Addresses are CIDRs.
    pub fn add_veth(
        &self,
        ns_x: &str,
        dev_x: &str,
        addr_x: &str,
        ns_y: &str,
        dev_y: &str,
        addr_y: &str,
    ) {
        sh(
            "ip",
            &[
                "link", "add", dev_x, "netns", ns_x, "type", "veth", "peer", "name", dev_y,
                "netns", ns_y,
            ],
        );
        self.addr_up(ns_x, dev_x, addr_x);
        self.addr_up(ns_y, dev_y, addr_y);
    }

    /// Deletes link `k` (1 or 2) of a direct testbed; both ends go.
    pub fn delete_link(&self, k: u8) {
        let (xb, b) = (if k == 1 { &self.x1b } else { &self.x2b }, &self.b);
        sh("ip", &["-n", b, "link", "del", xb]);
    }

    /// Makes link `k` of a direct IPv4 testbed again: same device names,
    /// same addresses (the MPTCP endpoint of link 2 is not restored).
    pub fn recreate_link(&self, k: u8) {
        assert_eq!(self.fam, Family::V4, "recreate_link: IPv4 testbeds only");
        let (xa, xb) = if k == 1 {
            (&self.x1a, &self.x1b)
        } else {
            (&self.x2a, &self.x2b)
        };
        self.add_veth(
            &self.a,
            xa,
            &format!("10.{k}.0.1/24"),
            &self.b,
            xb,
            &format!("10.{k}.0.2/24"),
        );
    }

    /// Deletes a namespace this testbed made (e.g. by `extra_netns`); it
    /// stays on the list, so a re-made one of the same name is also
    /// deleted in `Drop` (deleting a missing one is only logged).
    pub fn delete_netns(&self, ns: &str) {
        assert!(self.made_ns.iter().any(|n| n == ns), "{ns} is not ours");
        sh("ip", &["netns", "del", ns]);
    }

    /// Re-makes a namespace deleted by `delete_netns` (same name).
    pub fn remake_netns(&mut self, ns: &str) {
        assert!(self.made_ns.iter().any(|n| n == ns), "{ns} is not ours");
        self.made_ns.retain(|n| n != ns);
        self.add_ns(ns);
    }
}

/// A unique name for a test's own entry under /sys/fs/bpf or /tmp, in the
/// testbeds' pattern (a killed test's leftovers are swept by the next run).
pub fn scratch_name(what: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{BED_PREFIX}{}-{n}{what}", std::process::id())
}

/// Ids of the programs attached through tcx at a device's ingress or
/// egress (asked from the kernel: bpftool 7.1 does not list tcx).
pub fn tcx_prog_ids(ns: &str, dev: &str, egress: bool) -> Vec<u32> {
    let dev = dev.to_owned();
    in_netns(ns, move || {
        let idx = nix::net::if_::if_nametoindex(dev.as_str()).map_err(|e| format!("{dev}: {e}"))?;
        let mut ids = vec![0u32; 64];
        let mut opts = libbpf_sys::bpf_prog_query_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _,
            prog_ids: ids.as_mut_ptr(),
            ..Default::default()
        };
        opts.__bindgen_anon_1.count = ids.len() as u32;
        let at = if egress {
            libbpf_sys::BPF_TCX_EGRESS
        } else {
            libbpf_sys::BPF_TCX_INGRESS
        };
        // SAFETY: opts is correctly sized; prog_ids points at `count`
        // writable u32s that outlive the call.
        let r = unsafe { libbpf_sys::bpf_prog_query_opts(idx as i32, at, &mut opts) };
        if r < 0 {
            return Err(format!(
                "tcx query on {dev}: {}",
                std::io::Error::from_raw_os_error(-r)
            ));
        }
        // SAFETY: both union members are the same u32.
        let n = unsafe { opts.__bindgen_anon_1.count } as usize;
        ids.truncate(n.min(64));
        Ok(ids)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The id of the BPF link pinned under `dir` whose program is attached
/// at `hook` of `dev` in `ns` (xdp, tc-ingress, tc-egress); None if no
/// pin under `dir` is such a link.
pub fn pinned_link_at(dir: &Path, ns: &str, dev: &str, hook: &str) -> Option<u64> {
    let attached: Vec<u64> = match hook {
        "xdp" => xdp_prog_id(ns, dev).into_iter().collect(),
        "tc-ingress" => tcx_prog_ids(ns, dev, false)
            .into_iter()
            .map(u64::from)
            .collect(),
        "tc-egress" => tcx_prog_ids(ns, dev, true)
            .into_iter()
            .map(u64::from)
            .collect(),
        _ => panic!("unknown hook {hook}"),
    };
    let mut files = Vec::new();
    pinned_files(dir, &mut files);
    files.into_iter().find_map(|f| {
        let v = bpftool_json(&["link", "show", "pinned", f.to_str()?])?;
        let prog = v["prog_id"].as_u64()?;
        attached.contains(&prog).then(|| v["id"].as_u64()).flatten()
    })
}

/// Sends Ethernet frames out of `dev` in namespace `ns` through an
/// AF_PACKET socket. Without PACKET_QDISC_BYPASS they go through
/// dev_queue_xmit, so the device's TC egress hook (clsact or tcx) sees them
/// like the stack's own packets: an MPTCP client's segments, made here, on
/// a kernel that has no MPTCP of its own.
pub fn send_frames(ns: &str, dev: &str, frames: Vec<Vec<u8>>) -> Result<(), String> {
    let dev = dev.to_owned();
    in_netns(ns, move || {
        let name = std::ffi::CString::new(dev.clone()).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(last_err(&format!("if_nametoindex({dev})")));
        }
        // SAFETY: plain syscall; protocol 0: this socket only sends.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(last_err("socket(AF_PACKET)"));
        }
        let mut res = Ok(());
        for f in &frames {
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            // the frame's own EtherType, in network order as it stands
            sll.sll_protocol = u16::from_ne_bytes([f[12], f[13]]);
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            // SAFETY: the buffer and address outlive the call; sizes match.
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr() as *const libc::c_void,
                    f.len(),
                    0,
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if n != f.len() as isize {
                res = Err(last_err(&format!("sendto({dev}, {} bytes)", f.len())));
                break;
            }
        }
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        res
    })
}

/// Whether tshark runs here (the packet decoder independent of our code).
pub fn have_tshark() -> bool {
    std::process::Command::new("tshark")
        .arg("-v")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A packet capture on one device: an AF_PACKET socket bound to it, opened
/// in its namespace (the socket stays bound there). In-process rather than
/// tshark: tshark takes minutes to start under QEMU TCG.
pub struct Capture {
    fd: std::os::fd::OwnedFd,
}

impl Capture {
    /// Starts capturing on `dev` in `ns`; it listens when this returns.
    pub fn start(ns: &str, dev: &str) -> Capture {
        use std::os::fd::FromRawFd;
        let dev = dev.to_owned();
        let fd = in_netns(ns, move || {
            let name = std::ffi::CString::new(dev.clone()).map_err(|e| e.to_string())?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                return Err(last_err(&format!("if_nametoindex({dev})")));
            }
            let all = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain syscall.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    all.into(),
                )
            };
            if fd < 0 {
                return Err(last_err("socket(AF_PACKET)"));
            }
            // SAFETY: a fresh fd we own.
            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = all;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: the address outlives the call; size matches.
            let r = unsafe {
                libc::bind(
                    fd,
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r < 0 {
                return Err(last_err("bind(AF_PACKET)"));
            }
            set_timeout_opt(fd, libc::SO_RCVTIMEO, Duration::from_millis(100))?;
            Ok(owned)
        })
        .expect("capture socket");
        Capture { fd }
    }

    /// The frames that arrived on the device (not the ones it sent) and
    /// that `keep` accepts, until there are `count` or `limit` has passed.
    pub fn frames(
        &self,
        count: usize,
        limit: Duration,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < count && Instant::now() < end {
            // SAFETY: as in start.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buffer and address outlive the call; sizes match.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n <= 0 {
                continue; // the receive timeout: look at the clock again
            }
            let f = &buf[..n as usize];
            if sll.sll_pkttype != libc::PACKET_OUTGOING && keep(f) {
                out.push(f.to_vec());
            }
        }
        out
    }
}
