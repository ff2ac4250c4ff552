//! MPTCP end hosts: IPPROTO_MPTCP sockets, transfers and uploads driven
//! from threads inside the namespaces, and the kernel's own account of
//! them (`ss -tni` subflows, `nstat` MPTcpExt counters).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TryRecvError;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Linux's IPPROTO_MPTCP.
pub const IPPROTO_MPTCP: i32 = 262;
/// TCP port of the test server (each testbed has its own namespaces).
pub const PORT: u16 = 5201;
/// The server writes this much, every `SEND_GAP`.
pub const CHUNK: usize = 16384;
pub const SEND_GAP: Duration = Duration::from_millis(5);

/// Whether the running kernel has MPTCP (CONFIG_MPTCP: the net.mptcp
/// sysctls exist).
pub fn kernel_has_mptcp() -> bool {
    Path::new("/proc/sys/net/mptcp").exists()
}

/// Byte `k` of the stream: a pattern that catches moved or lost bytes.
fn pattern_byte(k: u64) -> u8 {
    (k % 251) as u8
}

pub(super) fn sockaddr(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
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

pub(super) fn last_err(what: &str) -> String {
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

pub(super) fn set_timeout_opt(fd: i32, opt: i32, d: Duration) -> Result<(), String> {
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
    /// The client's and the server's namespaces, for `wire_state`.
    netns: [String; 2],
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
            netns: [bed.a.clone(), bed.b.clone()],
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
            Ok(Err(e)) => panic!("transfer failed: {e}\n{}", wire_state(&self.netns)),
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
        self.try_wait_sent().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `wait_sent`; a failure is the error, with both ends' state.
    pub fn try_wait_sent(&mut self) -> Result<u64, String> {
        if let Some(n) = self.sent {
            return Ok(n);
        }
        match self
            .sent_rx
            .recv_timeout(self.duration + Duration::from_secs(30))
        {
            Ok(Ok(n)) => {
                self.sent = Some(n);
                Ok(n)
            }
            Ok(Err(e)) => Err(format!("transfer failed: {e}\n{}", wire_state(&self.netns))),
            Err(e) => Err(format!(
                "transfer did not finish sending: {e}\n{}",
                wire_state(&self.netns)
            )),
        }
    }

    /// The client's namespace.
    pub fn client_netns(&self) -> &str {
        &self.netns[0]
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
    /// Set: the client stops writing before `duration` is up.
    stop: Arc<AtomicBool>,
    close_tx: Option<mpsc::Sender<()>>,
    client: Option<thread::JoinHandle<Result<(), String>>>,
    server: Option<thread::JoinHandle<Result<u64, String>>>,
    /// The client's and the server's namespaces, for `wire_state`.
    netns: [String; 2],
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
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let client = thread::spawn(move || -> Result<(), String> {
            let r: Result<(TcpStream, u64), String> = (|| {
                enter_netns(&ns_a)?;
                let mut s = mptcp_connect_from(src, dst, Duration::from_secs(5))?;
                s.set_write_timeout(Some(Duration::from_secs(10)))
                    .map_err(|e| e.to_string())?;
                let pat: Vec<u8> = (0..(CHUNK as u64 + 251)).map(pattern_byte).collect();
                let start = Instant::now();
                let mut sent: u64 = 0;
                while start.elapsed() < duration && !stopped.load(Ordering::Relaxed) {
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
            stop,
            close_tx: Some(close_tx),
            client: Some(client),
            server: Some(server),
            netns: [bed.a.clone(), bed.b.clone()],
        }
    }

    /// Ends the client's writing now (`finish` then returns without
    /// waiting for the rest of the duration).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
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
            Ok(Err(e)) => panic!("upload failed: {e}\n{}", wire_state(&self.netns)),
            Err(e) => panic!(
                "upload did not finish sending: {e}\n{}",
                wire_state(&self.netns)
            ),
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

/// What the kernel says of both ends when a transfer fails: their
/// sockets (`ss -tniM`) and every non-zero TCP and MPTCP counter.
pub fn wire_state(netns: &[String]) -> String {
    let mut out = String::new();
    for ns in netns {
        let ss = ns_run(ns, "ss", &["-tniM"]);
        out.push_str(&format!("--- {ns}: ss -tniM\n{}", ss.stdout));
        let counters: Vec<String> = nstat(ns)
            .into_iter()
            .filter(|(k, v)| *v != 0 && (k.starts_with("Tcp") || k.starts_with("MPTcp")))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("--- {ns}: nstat {}\n", counters.join(" ")));
    }
    out
}

/// The most bytes queued for reading on an established MPTCP socket of
/// `ns` (`ss -M`'s Recv-Q).
pub fn mptcp_recv_queued(ns: &str) -> u64 {
    let text = ns_run(ns, "ss", &["-HMn", "state", "established"])
        .expect_ok()
        .stdout;
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// The MPTCP fallback counters (`MPTcpExt*Fallback*`).
pub fn fallback_counters(ns: &str) -> BTreeMap<String, u64> {
    nstat(ns)
        .into_iter()
        .filter(|(k, _)| k.starts_with("MPTcpExt") && k.contains("Fallback"))
        .collect()
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
