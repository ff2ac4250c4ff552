//! steer_subflows: a controller that gives each subflow of an MPTCP
//! connection its own link, on a router or hypervisor in the middle.
//!
//! It follows the `get_connect` / `get_subflow` events of the applied
//! chains (the library form of `emptcp events`) and, for each new subflow
//! of a connection, puts its 4-tuple into a `subflow`-keyed u32 map: subflow
//! i (0 = the MP_CAPABLE one, then the joins in the order their MP_JOIN SYNs
//! pass) gets the value `first_mark + i mod links`. A chain
//! `set_mark mark = { map = "NAME", key = "subflow" }` on the same path
//! turns the value into the packet's mark, and `ip rule fwmark N table N`
//! sends each mark out of its own link. The subflow's first packets (its
//! SYN, and what passes before the map holds it) take the default route.
//!
//! The eMPTCP prototype did this with a user-space loop over a perf buffer
//! that rewrote whole maps; here it is one ring-buffer reader and one map
//! update per subflow, the next packet of the subflow sees it.
//!
//! ```text
//! cargo build --release --example steer_subflows
//! target/release/examples/steer_subflows --map subflow_link --links 2 --first-mark 2
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use emptcp::events::{EventView, Events};
use emptcp::runtime::Runtime;

/// Gives subflow i of each MPTCP connection the mark first-mark + i mod links.
#[derive(Parser, Debug)]
struct Args {
    /// State directory of the applied chains.
    #[arg(long, env = "EMPTCP_STATE_DIR", default_value = "/sys/fs/bpf/emptcp")]
    state_dir: PathBuf,
    /// The subflow-keyed u32 map that set_mark reads.
    #[arg(long)]
    map: String,
    /// Number of links to spread the subflows over.
    #[arg(long, default_value_t = 2)]
    links: u32,
    /// The mark of link 0 (link i gets first-mark + i).
    #[arg(long, default_value_t = 2)]
    first_mark: u32,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    timeout: Option<u64>,
}

/// What the controller knows: the subflows it has placed and, per
/// connection, how many.
#[derive(Debug, Default)]
pub struct Steerer {
    links: u32,
    first_mark: u32,
    /// Connection (its MP_CAPABLE 4-tuple, as events name it) -> subflows.
    subflows: HashMap<String, u32>,
    /// 4-tuples placed already (a SYN and its ACK, a retransmitted SYN).
    placed: HashSet<(SocketAddr, SocketAddr)>,
}

/// One placement: the map element (in `emptcp map add` form) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub element: String,
    pub connection: String,
    pub index: u32,
    pub mark: u32,
}

impl Steerer {
    pub fn new(links: u32, first_mark: u32) -> Steerer {
        Steerer {
            links: links.max(1),
            first_mark,
            ..Steerer::default()
        }
    }

    /// The placement an event calls for: a new MP_CAPABLE 4-tuple is
    /// subflow 0 of its connection, a new MP_JOIN 4-tuple of a known
    /// connection the next subflow. Everything else: None.
    pub fn place(&mut self, v: &EventView) -> Option<Placement> {
        let src = SocketAddr::new(v.saddr, v.sport);
        let dst = SocketAddr::new(v.daddr, v.dport);
        if self.placed.contains(&(src, dst)) {
            return None;
        }
        // events.rs names a connection "saddr:sport -> daddr:dport"
        let conn = match v.kind {
            "connect" => format!("{src} -> {dst}"),
            // the join's token is known once the connection's keys passed
            _ => v.connection.clone()?,
        };
        let n = self.subflows.entry(conn.clone()).or_insert(0);
        let index = *n;
        *n += 1;
        self.placed.insert((src, dst));
        let mark = self.first_mark + index % self.links;
        Some(Placement {
            element: format!("{src} . {dst}={mark}"),
            connection: conn,
            index,
            mark,
        })
    }
}

/// Follows the events under `dir` and puts each new subflow into `map`
/// until `stop()`; `log` gets one line per placement.
pub fn run(
    dir: &Path,
    map: &str,
    links: u32,
    first_mark: u32,
    stop: &dyn Fn() -> bool,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    if links == 0 {
        bail!("--links must be at least 1");
    }
    let rt = Runtime {
        dir: dir.to_path_buf(),
        ..Runtime::default()
    };
    // the map must be there before the first event: fail now, not later
    rt.table_list(map, Some("map"))?;
    let events = Events::open(dir)?;
    log(&format!(
        "following events under {}: subflow i -> {map} = {first_mark} + i mod {links}",
        dir.display()
    ));
    let mut steer = Steerer::new(links, first_mark);
    let mut failed = None;
    events.follow(stop, &mut |v| {
        let Some(p) = steer.place(v) else {
            return true;
        };
        match rt.table_add(map, Some("map"), std::slice::from_ref(&p.element)) {
            Ok(_) => {
                log(&format!(
                    "{}: subflow {} of [{}] -> mark {}",
                    p.element.split('=').next().unwrap_or(""),
                    p.index,
                    p.connection,
                    p.mark
                ));
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(e.context(format!("failed to add to map {map:?}"))),
        None => Ok(()),
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    let args = Args::parse();
    if let Err(e) = controller(&args) {
        // one line, like emptcp's own errors
        eprintln!("steer_subflows: {e:#}");
        std::process::exit(1);
    }
}

fn controller(args: &Args) -> Result<()> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let h = nix::sys::signal::SigHandler::Handler(on_signal);
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, h)
            .context("failed to install the SIGINT handler")?;
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, h)
            .context("failed to install the SIGTERM handler")?;
    }
    let start = Instant::now();
    let timeout = args.timeout.map(Duration::from_secs);
    let stop = || STOP.load(Ordering::SeqCst) || timeout.is_some_and(|t| start.elapsed() >= t);
    run(
        &args.state_dir,
        &args.map,
        args.links,
        args.first_mark,
        &stop,
        &mut |l| println!("{l}"),
    )
}
