//! `emptcp events`: the stream of MPTCP connection and subflow events that
//! `get_connect` / `get_subflow` put into the ring buffer, decoded, with
//! tokens and IDSNs computed per RFC 8684 (SHA-256 of the key).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, RingBufferBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::abi::{self, types};
use crate::runtime::state::{State, StateDir};

/// Token of a key: the most significant 32 bits of SHA-256(key, big endian).
pub fn key_token(key: u64) -> u32 {
    let h = Sha256::digest(key.to_be_bytes());
    u32::from_be_bytes(h[..4].try_into().expect("4 bytes"))
}

/// Initial data sequence number of a key: the least significant 64 bits.
pub fn key_idsn(key: u64) -> u64 {
    let h = Sha256::digest(key.to_be_bytes());
    u64::from_be_bytes(h[24..32].try_into().expect("8 bytes"))
}

/// An event as printed.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub time_ns: u64,
    pub kind: &'static str,
    pub chain: Option<String>,
    pub dev: Option<String>,
    pub hook: Option<String>,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub packet: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_key: Option<String>,
    /// Keys from the host's point of view, when the hook tells it (TC egress:
    /// the sender is local; XDP/TC ingress: the receiver is local).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_idsn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_idsn: Option<u64>,
    /// MP_JOIN SYN: the token of the connection being joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<bool>,
    /// Subflow events: the connection (its MP_CAPABLE 4-tuple) the token belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

fn addr(v6: bool, b: &[u8; 16]) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// TCP header flag bits.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn packet_kind(flags: u8) -> &'static str {
    match (flags & TCP_SYN != 0, flags & TCP_ACK != 0) {
        (true, false) => "syn",
        (true, true) => "synack",
        _ => "ack",
    }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Option<types::emptcp_event> {
    let mut e = types::emptcp_event::default();
    plain::copy_from_bytes(&mut e, bytes).ok()?;
    Some(e)
}

/// Which chain, device and hook a slot belongs to.
fn slot_owner(st: &State, slot: u16, xdp: bool) -> Option<(String, String, String)> {
    st.points
        .iter()
        .filter(|p| (p.hook.family() == "xdp") == xdp)
        .find_map(|p| {
            p.chains
                .iter()
                .find(|c| c.slots.contains(&slot))
                .map(|c| (c.spec.name.clone(), p.dev.clone(), p.hook.to_string()))
        })
}

/// Turns raw events into views; remembers tokens to link subflows.
#[derive(Default)]
pub struct Decoder {
    /// token -> "saddr:sport -> daddr:dport" of its MP_CAPABLE
    conns: HashMap<u32, String>,
}

impl Decoder {
    pub fn view(&mut self, e: &types::emptcp_event, st: &State) -> EventView {
        let v6 = e.flags & abi::EVF_V6 != 0;
        let xdp = e.flags & abi::EVF_XDP != 0;
        let subflow = e.kind == u16::from(abi::EV_SUBFLOW);
        let owner = slot_owner(st, e.slot, xdp);
        let (saddr, daddr) = (addr(v6, &e.saddr), addr(v6, &e.daddr));
        let (sport, dport) = (u16::from_be(e.sport), u16::from_be(e.dport));
        let tuple = format!(
            "{}:{sport} -> {}:{dport}",
            if v6 {
                format!("[{saddr}]")
            } else {
                saddr.to_string()
            },
            if v6 {
                format!("[{daddr}]")
            } else {
                daddr.to_string()
            }
        );
        let mut v = EventView {
            time_ns: e.ts_ns,
            kind: if subflow { "subflow" } else { "connect" },
            chain: owner.as_ref().map(|o| o.0.clone()),
            dev: owner.as_ref().map(|o| o.1.clone()),
            hook: owner.as_ref().map(|o| o.2.clone()),
            saddr,
            daddr,
            sport,
            dport,
            packet: packet_kind(e.tcp_flags),
            version: None,
            sender_key: None,
            receiver_key: None,
            local_key: None,
            remote_key: None,
            sender_token: None,
            receiver_token: None,
            sender_idsn: None,
            receiver_idsn: None,
            token: None,
            nonce: None,
            addr_id: None,
            backup: None,
            connection: None,
        };
        if subflow {
            if e.token != 0 {
                v.token = Some(format!("{:08x}", e.token));
                v.connection = self.conns.get(&e.token).cloned();
            }
            if e.nonce != 0 {
                v.nonce = Some(e.nonce);
            }
            if e.opt_len != 24 {
                v.addr_id = Some(e.addr_id);
                v.backup = Some(e.backup != 0);
            }
            return v;
        }
        v.version = Some(e.version);
        let hex = |k: u64| format!("{k:016x}");
        if e.flags & abi::EVF_SKEY != 0 {
            let t = key_token(e.skey);
            v.sender_key = Some(hex(e.skey));
            v.sender_token = Some(format!("{t:08x}"));
            v.sender_idsn = Some(key_idsn(e.skey));
            self.conns.insert(t, tuple.clone());
        }
        if e.flags & abi::EVF_RKEY != 0 {
            let t = key_token(e.rkey);
            v.receiver_key = Some(hex(e.rkey));
            v.receiver_token = Some(format!("{t:08x}"));
            v.receiver_idsn = Some(key_idsn(e.rkey));
            self.conns.insert(t, tuple);
        }
        match v.hook.as_deref() {
            Some("tc-egress") => {
                v.local_key = v.sender_key.clone();
                v.remote_key = v.receiver_key.clone();
            }
            Some("xdp") | Some("tc-ingress") => {
                v.local_key = v.receiver_key.clone();
                v.remote_key = v.sender_key.clone();
            }
            _ => {}
        }
        v
    }
}

fn line(v: &EventView) -> String {
    let mut s = format!(
        "{} {} {}:{} -> {}:{} {}",
        v.kind,
        v.packet,
        v.saddr,
        v.sport,
        v.daddr,
        v.dport,
        v.chain
            .as_deref()
            .map(|c| format!("chain {c}"))
            .unwrap_or_default()
    );
    if let Some(t) = &v.sender_token {
        s += &format!(
            " sender_key {} token {t}",
            v.sender_key.as_deref().unwrap_or("-")
        );
    }
    if let Some(t) = &v.receiver_token {
        s += &format!(
            " receiver_key {} token {t}",
            v.receiver_key.as_deref().unwrap_or("-")
        );
    }
    if let Some(t) = &v.token {
        s += &format!(" token {t}");
    }
    if let Some(b) = v.backup {
        s += &format!(" addr_id {} backup {}", v.addr_id.unwrap_or(0), u8::from(b));
    }
    if let Some(c) = &v.connection {
        s += &format!(" connection [{c}]");
    }
    s
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// One of the EV_READERS reader slots: its ring buffer (locked with flock
/// on the directory `reader-N` beside it, so that slot is ours while we live) and its flag in
/// `emptcp_g_readers`, which makes the BPF side write to that ring. Drop
/// clears the flag; a reader killed before it could leaves the flag set,
/// and the next reader of that slot skips what the ring held.
struct ReaderSlot {
    ring: MapHandle,
    readers: MapHandle,
    slot: u32,
    since_ns: u64,
    /// Map ids of `readers` and `ring`, to notice their pins replaced.
    ids: (u32, u32),
    _lock: nix::fcntl::Flock<std::fs::File>,
}

use crate::abi::EV_READERS;

/// How often a reader looks whether the maps it reads are still the
/// pinned ones (`detach --all` removes them; the next `apply` with
/// get_connect or get_subflow pins new ones, which the old ring never sees).
const RESET_POLL: Duration = Duration::from_millis(500);

fn ring_name(slot: u32) -> String {
    match slot {
        0 => "emptcp_g_events".to_string(),
        n => format!("emptcp_g_events{n}"),
    }
}

/// The id of the map pinned at `path`, if one is.
fn pinned_map_id(path: &std::path::Path) -> Option<u32> {
    let m = MapHandle::from_pinned_path(path).ok()?;
    map_id(&m)
}

fn map_id(m: &MapHandle) -> Option<u32> {
    m.info().ok().map(|i| i.info.id)
}

impl ReaderSlot {
    fn claim(dir: &std::path::Path) -> Result<ReaderSlot> {
        let rpath = dir.join("emptcp_g_readers");
        let readers = MapHandle::from_pinned_path(&rpath).with_context(|| {
            format!(
                "no event ring buffers under {} (apply a chain with get_connect or get_subflow first)",
                dir.display()
            )
        })?;
        for slot in 0..EV_READERS {
            let path = dir.join(ring_name(slot));
            // the slot's lock: a directory beside the pins (bpffs pins
            // cannot be opened as files, and every map fd shares one inode)
            let ldir = dir.join(format!("reader-{slot}"));
            if let Err(e) = std::fs::create_dir(&ldir) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(e).with_context(|| format!("failed to create {}", ldir.display()));
                }
            }
            let f = std::fs::File::open(&ldir)
                .with_context(|| format!("failed to open {}", ldir.display()))?;
            let Ok(lock) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            let ring = MapHandle::from_pinned_path(&path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            let since_ns = monotonic_ns();
            let pid = std::process::id();
            readers
                .update(&slot.to_ne_bytes(), &pid.to_ne_bytes(), MapFlags::ANY)
                .context("failed to register as an event reader")?;
            let ids = (map_id(&readers).unwrap_or(0), map_id(&ring).unwrap_or(0));
            return Ok(ReaderSlot {
                ring,
                readers,
                slot,
                since_ns,
                ids,
                _lock: lock,
            });
        }
        anyhow::bail!("{EV_READERS} `emptcp events` readers are running already; stop one first")
    }

    /// True while `dir` still pins the maps this reader reads.
    fn still_pinned(&self, dir: &std::path::Path) -> bool {
        let now = (
            pinned_map_id(&dir.join("emptcp_g_readers")),
            pinned_map_id(&dir.join(ring_name(self.slot))),
        );
        now == (Some(self.ids.0), Some(self.ids.1))
    }
}

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        let _ = self
            .readers
            .update(&self.slot.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY);
    }
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns().
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Streams events until Ctrl-C, `count` events or `timeout`.
///
/// A reader outlives the state it reads: after `detach --all` it keeps
/// waiting (within `timeout`, like a reader started before any apply);
/// once an `apply` pins new rings, it claims a slot of those and goes on,
/// with one line on stderr, its event count carried over.
pub fn stream(
    dir: &std::path::Path,
    json: bool,
    chain: Option<&str>,
    count: Option<usize>,
    timeout: Option<Duration>,
) -> Result<()> {
    let reader = Events::open(dir)?;
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let h = nix::sys::signal::SigHandler::Handler(on_signal);
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, h);
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, h);
    }
    let start = Instant::now();
    let stopped = || STOP.load(Ordering::SeqCst) || timeout.is_some_and(|t| start.elapsed() >= t);
    let stdout = std::io::stdout();
    let mut seen = 0usize;
    // one write per batch drained, not per event; a reader still sees
    // each event within one poll of its arrival
    let mut print = |views: Vec<EventView>| -> Result<bool> {
        let mut o = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        for v in views {
            if chain.is_some_and(|c| v.chain.as_deref() != Some(c)) {
                continue;
            }
            if json {
                serde_json::to_writer(&mut o, &v)?;
                writeln!(o)?;
            } else {
                writeln!(o, "{}", line(&v))?;
            }
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                o.flush()?;
                return Ok(true);
            }
        }
        o.flush()?;
        Ok(false)
    };
    reader.run(&stopped, &mut print)
}

/// A reader of the event stream: the library form of `emptcp events`, for
/// controllers. `open` claims one of the reader slots (so it counts
/// against the four readers), and events from then on are kept for it;
/// `follow` hands them over, decoded and linked to their connections.
pub struct Events {
    dir: std::path::PathBuf,
    reader: ReaderSlot,
}

impl Events {
    /// Claims a reader slot of the rings under the state directory `dir`
    /// (a chain with get_connect or get_subflow must be applied).
    pub fn open(dir: &std::path::Path) -> Result<Events> {
        Ok(Events {
            dir: dir.to_path_buf(),
            reader: ReaderSlot::claim(dir)?,
        })
    }

    /// Calls `f` with each event in order, until `f` returns false or
    /// `stop()` is true (checked at least every 100 ms). Like `emptcp
    /// events`, it follows the rings of the next `apply` after a `detach
    /// --all`.
    pub fn follow(
        self,
        stop: &dyn Fn() -> bool,
        f: &mut dyn FnMut(&EventView) -> bool,
    ) -> Result<()> {
        self.run(stop, &mut |views| Ok(!views.iter().all(&mut *f)))
    }

    /// Reads until `stopped()` or `handle` (given each batch drained from
    /// the ring) returns true.
    fn run(
        self,
        stopped: &dyn Fn() -> bool,
        handle: &mut dyn FnMut(Vec<EventView>) -> Result<bool>,
    ) -> Result<()> {
        let Events { dir, mut reader } = self;
        // None while another emptcp changes the state: keep what we have
        let load_state = || -> Option<State> {
            StateDir::open_shared(&dir, false)
                .ok()
                .flatten()
                .and_then(|sd| sd.load().ok())
        };
        let mut st = load_state().unwrap_or_default();
        let mut dec = Decoder::default();
        loop {
            if read_ring(
                &reader,
                &dir,
                &mut st,
                &mut dec,
                handle,
                &load_state,
                stopped,
            )? == Ring::Done
            {
                return Ok(());
            }
            // the state was reset: wait for new rings as a fresh reader would
            reader = loop {
                if stopped() {
                    return Ok(());
                }
                std::thread::sleep(RESET_POLL);
                if let Ok(r) = ReaderSlot::claim(&dir) {
                    break r;
                }
            };
            st = load_state().unwrap_or_default();
            eprintln!("emptcp: events: state directory was reset; following the new ring");
        }
    }
}

/// How reading one ring ended.
#[derive(Debug, PartialEq, Eq)]
enum Ring {
    /// Ctrl-C, the timeout or the count: stop.
    Done,
    /// Its pins are gone or replaced: no new event will come to it.
    Reset,
}

/// Hands the events of `reader`'s ring to `handle`, a batch per poll,
/// until it is done or reset.
fn read_ring(
    reader: &ReaderSlot,
    dir: &std::path::Path,
    st: &mut State,
    dec: &mut Decoder,
    handle: &mut dyn FnMut(Vec<EventView>) -> Result<bool>,
    load_state: &dyn Fn() -> Option<State>,
    stopped: &dyn Fn() -> bool,
) -> Result<Ring> {
    let pending = std::cell::RefCell::new(Vec::<types::emptcp_event>::new());
    let mut b = RingBufferBuilder::new();
    b.add(&reader.ring, |data: &[u8]| {
        // a ring left by a reader that died may hold older events
        if let Some(e) = decode(data).filter(|e| e.ts_ns >= reader.since_ns) {
            pending.borrow_mut().push(e);
        }
        0
    })?;
    let rb = b.build()?;
    let mut checked = Instant::now();
    while !stopped() {
        rb.poll(Duration::from_millis(100))?;
        let evs: Vec<_> = pending.borrow_mut().drain(..).collect();
        let mut views = Vec::with_capacity(evs.len());
        let mut reloaded = false;
        for e in evs {
            // a chain applied after we started: read the state again (once
            // per batch, not per event of an unknown slot)
            if !reloaded && slot_owner(st, e.slot, e.flags & abi::EVF_XDP != 0).is_none() {
                if let Some(s) = load_state() {
                    *st = s;
                }
                reloaded = true;
            }
            views.push(dec.view(&e, st));
        }
        if handle(views)? {
            return Ok(Ring::Done);
        }
        if checked.elapsed() >= RESET_POLL {
            checked = Instant::now();
            if !reader.still_pinned(dir) {
                return Ok(Ring::Reset);
            }
        }
    }
    Ok(Ring::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_idsn_follow_rfc8684() {
        // SHA-256 of 8 zero bytes = af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc
        assert_eq!(key_token(0), 0xaf5570f5);
        assert_eq!(key_idsn(0), 0xe5b2328de0e83dfc);
    }
}
