//! `emptcp run POLICY`: emptcp as a service. The file is applied as the
//! whole desired state (`apply --prune`) and stays applied while the
//! process runs in the foreground:
//!
//! - `SIGHUP` reads the file again and applies it the same way: new
//!   chains attached, changed ones replaced atomically, chains, sets and
//!   maps no longer in it removed, all in one transaction. A file that
//!   fails to parse or load changes nothing: one logged line, the running
//!   generation stays.
//! - `SIGTERM`/`SIGINT` remove what the file applied (its chains, sets and
//!   maps; with nothing else left, every pin of the state directory) and
//!   exit 0; `--keep` leaves it all running.
//! - One `run` per state directory: the `run` lock (statedir.rs), held
//!   for the life of the process. Other commands (`show`, `stats`, `set
//!   add`, …) keep working: they take the directory's own lock only for
//!   the moment they need it.
//!
//! One line per event on stderr. Under systemd (`JOURNAL_STREAM` set)
//! each line carries its syslog priority (`<6>`, `<4>`, `<3>`) for
//! journald. Signals are blocked in every thread and taken with
//! sigwait(2) by the main thread: no handler, no polling.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::observe::metrics::{self, Health, Shared};
use crate::policy::model::Policy;
use crate::runtime::statedir::StateDir;
use crate::runtime::{ApplyReport, Runtime};

/// What `emptcp run` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub keep: bool,
}

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warning,
    Error,
}

/// True when stderr is the journal's stream: `JOURNAL_STREAM` names its
/// device and inode (systemd.exec(5)), not only set by some ancestor.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(2) else {
        return false;
    };
    v.to_string_lossy() == format!("{}:{}", st.st_dev, st.st_ino)
}

/// One event, one line on stderr.
fn log(level: Level, msg: &str) {
    let line = msg.replace('\n', " ");
    if stderr_is_journal() {
        let prio = match level {
            Level::Info => 6,
            Level::Warning => 4,
            Level::Error => 3,
        };
        eprintln!("<{prio}>emptcp: {line}");
    } else {
        eprintln!("emptcp: {line}");
    }
}

/// "chain a, chain b, set t"
fn what_applied(p: &Policy) -> String {
    p.chains
        .iter()
        .map(|c| format!("chain {}", c.name))
        .chain(
            p.tables
                .iter()
                .map(|t| format!("{} {}", t.def.what(), t.def.name)),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads and applies the file as the whole desired state.
fn apply_file(rt: &Runtime, path: &Path) -> Result<(Policy, ApplyReport)> {
    let p = rt.read_policy(path)?;
    let r = rt.apply_desired(&p)?;
    Ok((p, r))
}

fn log_report(gen: u64, path: &Path, p: &Policy, r: &ApplyReport) {
    for n in &r.notes {
        log(Level::Info, n);
    }
    for a in &r.repaired {
        log(Level::Warning, &format!("repaired {a}"));
    }
    let mut line = format!(
        "applied {} (generation {gen}): {}",
        crate::cli::text::path(path),
        what_applied(p)
    );
    if !r.attached.is_empty() {
        line.push_str(&format!("; attached {}", r.attached.join(", ")));
    }
    if !r.removed.is_empty() {
        line.push_str(&format!("; removed {}", r.removed.join(", ")));
    }
    log(Level::Info, &line);
}

/// Warnings about the machine, once at the start.
fn log_warnings(rt: &Runtime, p: &Policy) {
    let mut w: Vec<String> = Vec::new();
    w.extend(crate::kernel::features::kernel_warning(
        &crate::kernel::features::get().release,
    ));
    w.extend(crate::runtime::jit_warnings());
    w.extend(crate::runtime::mptcp_warnings(p, rt.netns.as_deref()));
    w.extend(crate::kernel::features::apply_warning(p));
    for w in w {
        log(Level::Warning, &format!("warning: {w}"));
    }
}

/// Runs until SIGTERM or SIGINT. Errors before the first apply succeeded
/// (a bad file, a port in use, a second `run`) return at once, having
/// changed nothing: exit 1.
pub fn run(rt: Runtime, opts: &Options) -> Result<()> {
    crate::priv_check()?;
    // blocked before any thread starts, so that every thread inherits it
    // and the signals wait for sigwait below
    let mut mask = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    mask.thread_block().context("failed to block signals")?;
    // a file that does not parse, or a port in use, changes nothing
    rt.read_policy(&opts.policy)?;
    let server = opts.metrics.map(metrics::bind).transpose()?;

    let sd = StateDir::open(&rt.dir, true)?.expect("created");
    let run_lock = sd.lock_run()?;
    drop(sd);

    let health: Shared = Arc::new(Mutex::new(Health {
        started_at: metrics::unix_now(),
        ..Default::default()
    }));
    let (mut applied, report) = match apply_file(&rt, &opts.policy) {
        Ok(x) => x,
        Err(e) => {
            // nothing of ours stays: the lock goes with the process, and an
            // empty state directory we made goes too
            let _ = remove_if_empty(&rt, &run_lock);
            return Err(e);
        }
    };
    log_warnings(&rt, &applied);
    {
        let mut h = health.lock().expect("health lock");
        h.generation = 1;
        h.last_ok = true;
        h.last_at = metrics::unix_now();
        h.chains = applied.chains.len();
    }
    log_report(1, &opts.policy, &applied, &report);
    if let (Some(server), Some(addr)) = (server, opts.metrics) {
        if let Err(e) = metrics::serve(server, rt.clone(), health.clone()) {
            let _ = stop(&rt, &applied, &run_lock);
            return Err(e);
        }
        log(
            Level::Info,
            &format!("serving metrics on http://{addr}/metrics"),
        );
    }
    log(
        Level::Info,
        &format!(
            "running (pid {}): SIGHUP reloads, SIGTERM stops",
            std::process::id()
        ),
    );

    loop {
        let sig = mask.wait().context("failed to wait for signals")?;
        match sig {
            Signal::SIGHUP => reload(&rt, opts, &health, &mut applied),
            _ => {
                log(Level::Info, &format!("{sig}: stopping"));
                break;
            }
        }
    }
    if opts.keep {
        log(
            Level::Info,
            &format!("stopped; left running (--keep): {}", what_applied(&applied)),
        );
        return Ok(());
    }
    let removed = stop(&rt, &applied, &run_lock)?;
    log(
        Level::Info,
        &format!(
            "stopped; removed {}",
            if removed.is_empty() {
                "nothing".into()
            } else {
                removed.join(", ")
            }
        ),
    );
    Ok(())
}

/// SIGHUP: the file again, as the whole desired state, or nothing at all.
fn reload(rt: &Runtime, opts: &Options, health: &Shared, applied: &mut Policy) {
    let r = apply_file(rt, &opts.policy);
    let mut h = health.lock().expect("health lock");
    h.last_at = metrics::unix_now();
    match r {
        Ok((p, report)) => {
            h.generation += 1;
            h.last_ok = true;
            h.reloads_ok += 1;
            h.chains = p.chains.len();
            log_report(h.generation, &opts.policy, &p, &report);
            *applied = p;
        }
        Err(e) => {
            h.last_ok = false;
            h.reloads_failed += 1;
            log(
                Level::Error,
                &format!(
                    "reload failed, nothing changed, generation {} still runs: {e:#}",
                    h.generation
                ),
            );
        }
    }
}

/// Removes what the file applied; with nothing else in the state, every
/// pin of the state directory too. Returns what went.
fn stop(
    rt: &Runtime,
    applied: &Policy,
    held: &crate::runtime::statedir::RunLock,
) -> Result<Vec<String>> {
    let (removed, left) = rt.retract(applied)?;
    if !left {
        rt.remove_all(Some(held))?;
    }
    Ok(removed)
}

/// After a first apply that failed: the state directory goes when it holds
/// nothing.
fn remove_if_empty(rt: &Runtime, held: &crate::runtime::statedir::RunLock) -> Result<()> {
    let empty = match StateDir::open(&rt.dir, false)? {
        Some(sd) => {
            let st = sd.load()?;
            st.points.is_empty() && st.tables.is_empty()
        }
        None => false,
    };
    if empty {
        rt.remove_all(Some(held))?;
    }
    Ok(())
}
