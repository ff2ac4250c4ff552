//! Applying, showing and removing chains: what the user asks for, turned
//! into one transaction (txn.rs) on the kernel objects (store.rs). The
//! kernel is the source of truth: `show` says when a recorded chain is not
//! running (health.rs), `apply` attaches such chains again.
//!
//! A change is planned completely before anything is created: devices
//! resolved, slots allocated, layouts planned, capacity and the size of the
//! state checked. Then the transaction records its intent, loads and
//! writes the new slots (unreachable), attaches new points, switches
//! existing points with one map update each, and commits.

pub mod capacity;
pub mod chain;
pub mod service;
pub mod state;
pub mod statedir;
pub mod store;
pub mod txn;
pub mod walkcount;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::abi::COUNTER_NAMES;
use crate::cli::text::quoted;
use crate::kernel::attach::{Attachment, LinkHow, XdpMode};
use crate::kernel::loader;
use crate::kernel::netns;
use crate::observe::health::{self, Health};
use crate::policy::model::{Chain, Hook, Policy};
use crate::runtime::chain::StageObject;
use crate::runtime::state::{now_ms, AttachPoint, ChainState, Retired, State, StateDir};
use crate::runtime::statedir::RunLock;
use crate::runtime::txn::Txn;
use crate::tables::{self, TableState};

pub use crate::runtime::store::slot_counters;
pub(crate) use crate::runtime::store::{load_entry, pinned_map, set_attach, write_slots, Objects};

/// Options shared by all commands.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub dir: PathBuf,
    /// `-n NETNS`: default namespace for chains that name none.
    pub netns: Option<String>,
    pub xdp_mode: XdpMode,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            dir: PathBuf::from(crate::runtime::state::DEFAULT_DIR),
            netns: None,
            xdp_mode: XdpMode::Auto,
        }
    }
}

/// The objects of a chain's stages.
/// A layout of `chains` on slots 1.., without devices, its tables those
/// of `specs` under ids in file order (a name not there: a one-element
/// addr set): for loading its programs through the verifier (`check`),
/// each lookup on its table's key type and size.
fn plan_unplaced(
    chains: &[&Chain],
    specs: &[crate::policy::model::TableSpec],
) -> Vec<chain::PlannedChain> {
    let n: usize = chains.iter().map(|c| chain::stage_count(c)).sum();
    let slots: Vec<u16> = (1..=n as u16).collect();
    let env = chain::Env {
        ifindex: &|_| Ok(0),
        table: &|name| {
            let at = specs.iter().position(|s| s.def.name == name);
            let def = at.map_or_else(
                || tables::TableDef {
                    name: name.to_owned(),
                    key: tables::KeyType::Addr,
                    value: None,
                    size: 1,
                    netns: None,
                },
                |i| specs[i].def.clone(),
            );
            let id = at.map_or(1, |i| {
                1 + specs[..i]
                    .iter()
                    .filter(|s| s.def.key.layout() == def.key.layout())
                    .count()
            });
            Ok(TableState {
                def,
                id: u8::try_from(id).unwrap_or(1),
            })
        },
    };
    let list: Vec<(&Chain, u16)> = chains.iter().map(|c| (*c, 0)).collect();
    chain::plan_with(&list, &slots, &env).unwrap_or_default()
}

fn chain_objects(c: &Chain) -> Vec<StageObject> {
    plan_unplaced(&[c], &[])
        .into_iter()
        .flat_map(|pc| pc.stages.into_iter().map(|s| s.object))
        .collect()
}

/// Kernel settings that make every chain slower, as warnings to print:
/// `bpf_jit_harden=2` blinds every constant, also in root's programs (a
/// stage's slot and parameters are constants); without the JIT
/// programs run in the interpreter (and tail calls are never direct jumps).
pub fn jit_warnings() -> Vec<String> {
    let read = |k: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{k}"))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let mut w = Vec::new();
    if read("bpf_jit_enable").as_deref() == Some("0") {
        w.push(
            "net.core.bpf_jit_enable is 0: chains run in the BPF interpreter, many times slower"
                .into(),
        );
    }
    // 1 hardens only programs loaded without CAP_SYS_ADMIN, which emptcp needs
    if read("bpf_jit_harden").as_deref() == Some("2") {
        w.push(
            "net.core.bpf_jit_harden is 2: every constant in the chains is blinded (slower stages)"
                .into(),
        );
    }
    w
}

/// MPTCP settings of the namespaces a policy's chains run in, as warnings
/// to print. `net.mptcp.enabled=0` (or a kernel without MPTCP) is not an
/// error: chains act on MPTCP packets wherever they pass, and a router or
/// hypervisor in the middle needs no MPTCP of its own; but on an end host
/// it means there will be no MPTCP traffic for them to act on.
pub fn mptcp_warnings(policy: &Policy, netns: Option<&str>) -> Vec<String> {
    let mut spaces: Vec<Option<String>> = policy
        .chains
        .iter()
        .map(|c| c.netns.clone().or_else(|| netns.map(str::to_owned)))
        .collect();
    spaces.sort();
    spaces.dedup();
    let mut w = Vec::new();
    for ns in spaces {
        let where_ = ns
            .as_ref()
            .map(|n| format!("network namespace {n:?}"))
            .unwrap_or_else(|| "this network namespace".into());
        // /proc/sys/net follows the reading thread's namespace
        let v = crate::kernel::netns::run_in(ns.as_deref(), || {
            Ok(std::fs::read_to_string("/proc/sys/net/mptcp/enabled").ok())
        });
        match v {
            Ok(Some(v)) if v.trim() == "0" => w.push(format!(
                "net.mptcp.enabled is 0 in {where_}: it opens and accepts no MPTCP connections; \
                 the chains still act on MPTCP packets that pass through"
            )),
            Ok(None) => w.push(format!(
                "no net.mptcp sysctls in {where_} (kernel without MPTCP?): \
                 the chains only see MPTCP packets that pass through"
            )),
            // a namespace that cannot be entered fails apply itself, with its own message
            _ => {}
        }
    }
    w
}

/// What `apply` did, for printing.
#[derive(Debug, Serialize, Default)]
pub struct ApplyReport {
    pub applied: Vec<String>,
    pub attached: Vec<String>,
    /// Chains that were not running and are again, with what was wrong.
    pub repaired: Vec<String>,
    /// What making the recorded state whole did, and drift left alone.
    pub notes: Vec<String>,
    /// `--prune`: chains, sets and maps removed because the file does not
    /// name them ("chain steer", "set tenants").
    pub removed: Vec<String>,
}

/// Where a device is: its index and its namespace's identity, now.
#[derive(Debug, Clone, Copy)]
struct Place {
    ifindex: u32,
    netns_ino: u64,
    netns_cookie: Option<u64>,
}

fn resolve(ns: Option<&str>, dev: &str) -> Result<Place> {
    let (ifindex, netns_cookie) = netns::run_in(ns, || {
        Ok((netns::ifindex(dev, ns)?, health::netns_cookie()))
    })?;
    Ok(Place {
        ifindex,
        netns_ino: netns::netns_inode(ns)?,
        netns_cookie,
    })
}

/// "veth1 tc-egress (netns a)"
fn point_name(p: &AttachPoint) -> String {
    format!(
        "{} {}{}",
        p.dev,
        p.hook,
        p.netns
            .as_ref()
            .map(|n| format!(" (netns {n})"))
            .unwrap_or_default()
    )
}

fn chain_names(p: &AttachPoint) -> String {
    p.chains
        .iter()
        .map(|c| c.spec.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

type PointId = (&'static str, u32);

fn pid(p: &AttachPoint) -> PointId {
    (p.hook.family(), p.id)
}

/// A planned change: the next state, which of its points get new layouts,
/// which are attached (new, or again after drift), which go away.
struct Change {
    next: State,
    touched: BTreeSet<PointId>,
    attach: BTreeSet<PointId>,
    removed: Vec<AttachPoint>,
    /// Tables new in `next.tables`, built, put into their slots before the
    /// switch.
    new_tables: Vec<(TableState, tables::Built)>,
    /// Tables whose contents the file replaces, swapped in after it.
    refills: Vec<(TableState, tables::Built)>,
    /// `--prune`: tables the file no longer names (or names with another
    /// type), emptied from their outer slots once the change is committed.
    dropped_tables: Vec<TableState>,
}

impl Change {
    fn new(base: &State) -> Change {
        Change {
            next: base.clone(),
            touched: BTreeSet::new(),
            attach: BTreeSet::new(),
            removed: Vec::new(),
            new_tables: Vec::new(),
            refills: Vec::new(),
            dropped_tables: Vec::new(),
        }
    }

    /// Moves points left without chains from `next` to `removed`.
    fn drop_empty_points(&mut self) {
        let (empty, kept): (Vec<AttachPoint>, Vec<AttachPoint>) =
            std::mem::take(&mut self.next.points)
                .into_iter()
                .partition(|p| p.chains.is_empty());
        self.next.points = kept;
        for p in empty {
            self.touched.remove(&pid(&p));
            self.attach.remove(&pid(&p));
            self.removed.push(p);
        }
    }
}

/// The program attach point `p`'s hook runs: its walk program, or its
/// entry program where its chains run by tail calls.
pub fn hook_prog(sd: &StateDir, p: &AttachPoint) -> Result<std::os::fd::OwnedFd> {
    store::hook_prog(sd, p)
}

/// The longest walk a packet may take through one attach point: every
/// stage of every chain on it is one tail call.
pub fn walk_length(p: &AttachPoint) -> usize {
    p.chains.iter().map(|c| chain::stage_count(&c.spec)).sum()
}

/// What can run a point's least capable stage.
pub fn point_runs(p: &AttachPoint) -> crate::stages::Runs {
    p.chains
        .iter()
        .map(|c| c.spec.runs())
        .max()
        .unwrap_or(crate::stages::Runs::AnyWalk)
}

/// What a point's stages cost the verifier in a walk.
pub fn point_insns(p: &AttachPoint) -> u64 {
    p.chains
        .iter()
        .map(|c| crate::runtime::capacity::chain_insns(&c.spec))
        .sum()
}

/// Refuses a layout the kernel could not run whole (capacity.rs): walk
/// length per point, stage slots, attach points.
fn check_capacity(next: &State) -> Result<()> {
    let points: Vec<crate::runtime::capacity::PointLoad> = next
        .points
        .iter()
        .map(|p| crate::runtime::capacity::PointLoad {
            dev: &p.dev,
            hook: p.hook,
            netns: p.netns.as_deref(),
            chains: p
                .chains
                .iter()
                .map(|c| (c.spec.name.as_str(), chain::stage_count(&c.spec)))
                .collect(),
            runs: point_runs(p),
            insns: point_insns(p),
        })
        .collect();
    crate::runtime::capacity::check_layout(&points).map_err(|e| anyhow!(e))
}

impl Runtime {
    /// Reads a policy file and checks it against the capacity limits on
    /// its own (capacity.rs): `apply`, `check` and `run` refuse the same
    /// files, before anything is loaded or changed.
    pub fn read_policy(&self, path: &std::path::Path) -> Result<Policy> {
        let p = Policy::from_file(path)?;
        crate::runtime::capacity::check_policy(&p, self.netns.as_deref(), &self.dir).map_err(
            |msg| crate::policy::PolicyError {
                file: crate::cli::text::path(path),
                msg,
            },
        )?;
        Ok(p)
    }

    fn chain_netns(&self, c: &Chain) -> Option<String> {
        c.netns.clone().or_else(|| self.netns.clone())
    }

    /// Creates or atomically replaces the chains of `policy`, and attaches
    /// again recorded chains that are not running (drift).
    pub fn apply(&self, policy: &Policy) -> Result<ApplyReport> {
        self.apply_with(policy, false)
    }

    /// `apply --prune`: `policy` is the whole desired state. As `apply`,
    /// and in the same transaction the chains, sets and maps it does not
    /// name are removed (attach points left without chains are detached).
    pub fn apply_desired(&self, policy: &Policy) -> Result<ApplyReport> {
        self.apply_with(policy, true)
    }

    fn apply_with(&self, policy: &Policy, prune: bool) -> Result<ApplyReport> {
        // devices first: a missing one changes nothing
        let mut places = Vec::new();
        for c in &policy.chains {
            let ns = self.chain_netns(c);
            let pl =
                resolve(ns.as_deref(), &c.dev).with_context(|| format!("chain \"{}\"", c.name))?;
            places.push(pl);
        }
        let sd = StateDir::open(&self.dir, true)?.expect("created");
        let mut txn = Txn::begin(&sd)?;
        let mut report = ApplyReport {
            notes: std::mem::take(&mut txn.notes),
            ..Default::default()
        };
        let mut ch = Change::new(&txn.base);
        self.plan_repairs(&sd, &mut ch, &mut report);
        if prune {
            report.removed = prune_chains(&mut ch, policy);
        }
        for (c, pl) in policy.chains.iter().zip(&places) {
            self.place_chain(&txn, &mut ch, c, *pl)?;
        }
        ch.drop_empty_points();
        if prune {
            report.removed.extend(prune_tables(&mut ch, policy));
        }
        self.plan_tables(&mut ch, policy)?;
        let attached_new: Vec<String> = ch
            .next
            .points
            .iter()
            .filter(|p| !txn.base.points.iter().any(|b| pid(b) == pid(p)))
            .map(point_name)
            .collect();
        run_change(&sd, txn, ch)?;
        report.applied = policy.chains.iter().map(|c| c.name.clone()).collect();
        report.attached = attached_new;
        Ok(report)
    }

    /// The file's sets and maps: new ones get an id and a table, existing
    /// ones a new table with the file's elements (swapped in whole).
    fn plan_tables(&self, ch: &mut Change, policy: &Policy) -> Result<()> {
        for spec in &policy.tables {
            let mut def = spec.def.clone();
            if def.netns.is_none() {
                def.netns = self.netns.clone();
            }
            let mut elems = Vec::with_capacity(spec.elements.len());
            for e in &spec.elements {
                elems.push(tables::parse_element(&def, e).map_err(|e| anyhow!(e))?);
            }
            let map = tables::build(&def, &elems)?;
            match ch.next.tables.iter_mut().find(|t| t.def.name == def.name) {
                Some(t)
                    if t.def.key == def.key
                        && t.def.value == def.value
                        && t.def.ref_flags() == def.ref_flags() =>
                {
                    t.def = def;
                    ch.refills.push((t.clone(), map));
                }
                // a size that changes a slot table's slots: a new table
                // under a new id, the chains that use it written anew
                // (their stages hold the size as a constant)
                Some(t) if t.def.key == def.key && t.def.value == def.value => {
                    let old = t.clone();
                    let id = free_table_id(ch, &def)?;
                    let t = TableState { def, id };
                    for x in ch
                        .next
                        .tables
                        .iter_mut()
                        .filter(|x| x.def.name == t.def.name)
                    {
                        *x = t.clone();
                    }
                    ch.dropped_tables.push(old);
                    for p in ch.next.points.iter() {
                        let uses = p.chains.iter().any(|c| {
                            crate::policy::table_refs(&c.spec)
                                .iter()
                                .any(|(_, n, _, _)| *n == t.def.name)
                        });
                        if uses {
                            ch.touched.insert(pid(p));
                        }
                    }
                    ch.new_tables.push((t, map));
                }
                Some(t) => bail!(
                    "{} {}: exists with {} keys{}; `emptcp {} delete` it first",
                    def.what(),
                    quoted(&def.name),
                    t.def.key,
                    t.def
                        .value
                        .map(|v| format!(" and {v} values"))
                        .unwrap_or_default(),
                    t.def.what()
                ),
                None => {
                    let id = free_table_id(ch, &def)?;
                    let t = TableState { def, id };
                    ch.next.tables.push(t.clone());
                    ch.new_tables.push((t, map));
                }
            }
        }
        Ok(())
    }

    /// Recorded points that are not running: those whose device is there
    /// are attached again; the others are named in a note.
    fn plan_repairs(&self, sd: &StateDir, ch: &mut Change, report: &mut ApplyReport) {
        for p in ch.next.points.iter_mut() {
            let h = health::check(sd, p);
            if h.is_ok() {
                continue;
            }
            if let Health::SlotEmpty(_) = h {
                ch.touched.insert(pid(p));
                report
                    .repaired
                    .push(format!("{}: {} (was: {h})", chain_names(p), point_name(p)));
                continue;
            }
            match resolve(p.netns.as_deref(), &p.dev) {
                Ok(pl) if h.reattachable() || h == Health::DeviceGone => {
                    p.ifindex = pl.ifindex;
                    p.netns_ino = pl.netns_ino;
                    p.netns_cookie = pl.netns_cookie;
                    ch.attach.insert(pid(p));
                    report.repaired.push(format!(
                        "{}: attached again to {} (was: {h})",
                        chain_names(p),
                        point_name(p)
                    ));
                }
                _ => report.notes.push(format!(
                    "{}: not running on {} ({h}); not repaired: `emptcp detach` it, or bring the device back and apply again",
                    chain_names(p),
                    point_name(p)
                )),
            }
        }
    }

    /// Puts chain `c` into the next state: replaced where it is, moved, or new.
    fn place_chain(&self, txn: &Txn, ch: &mut Change, c: &Chain, pl: Place) -> Result<()> {
        let ns = self.chain_netns(c);
        let at = |p: &AttachPoint| p.netns == ns && p.dev == c.dev && p.hook == c.hook;
        let mut spec = c.clone();
        spec.netns = ns.clone();
        let found = ch.next.points.iter().enumerate().find_map(|(pi, p)| {
            p.chains
                .iter()
                .position(|x| x.spec.name == c.name)
                .map(|ci| (pi, ci))
        });
        let id = match found {
            Some((pi, ci)) if at(&ch.next.points[pi]) => {
                // the same chain in the same place: its point keeps its
                // programs (an unchanged file loads nothing); a table it
                // names under a new id touches it in plan_tables
                let p = &mut ch.next.points[pi];
                if p.chains[ci].spec != spec {
                    p.chains[ci].spec = spec;
                    ch.touched.insert(pid(p));
                }
                return Ok(());
            }
            Some((pi, ci)) => {
                let p = &mut ch.next.points[pi];
                ch.touched.insert(pid(p));
                p.chains.remove(ci).id
            }
            None => ch.next.alloc_chain_id(),
        };
        let cs = ChainState {
            id,
            spec,
            slots: Vec::new(),
            kinds: Vec::new(),
        };
        if let Some(p) = ch.next.points.iter_mut().find(|p| at(p)) {
            if p.ifindex != pl.ifindex {
                bail!(
                    "chain \"{}\": {} changed while emptcp was planning; apply again",
                    c.name,
                    point_name(p)
                );
            }
            p.chains.push(cs);
            ch.touched.insert(pid(p));
            return Ok(());
        }
        let family = c.hook.family();
        let id = txn.alloc_attach_id(&ch.next, family)?;
        ch.next.points.push(AttachPoint {
            id,
            netns: ns,
            netns_ino: pl.netns_ino,
            netns_cookie: pl.netns_cookie,
            dev: c.dev.clone(),
            ifindex: pl.ifindex,
            hook: c.hook,
            xdp_mode: self.xdp_mode,
            attachment: Attachment::Link {
                pin: String::new(),
                how: LinkHow::Pending,
            },
            gen: 0,
            walk: false,
            walk_slot: 0,
            hook_walk: false,
            chains: vec![cs],
        });
        ch.touched.insert((family, id));
        ch.attach.insert((family, id));
        Ok(())
    }

    /// Removes one chain (its attach point goes when it was the last).
    pub fn detach(&self, name: &str) -> Result<Vec<String>> {
        let Some(sd) = StateDir::open(&self.dir, false)? else {
            bail!("no chain called {} (nothing applied)", quoted(name));
        };
        let mut txn = Txn::begin(&sd)?;
        let notes = std::mem::take(&mut txn.notes);
        let mut ch = Change::new(&txn.base);
        let (pi, ci) = ch
            .next
            .find_chain(name)
            .ok_or_else(|| anyhow!("no chain called {}", quoted(name)))?;
        ch.next.points[pi].chains.remove(ci);
        ch.touched.insert(pid(&ch.next.points[pi]));
        ch.drop_empty_points();
        run_change(&sd, txn, ch)?;
        Ok(notes)
    }

    /// Removes every chain, link, program and pin emptcp made, and the
    /// state directory when nothing else is in it. Returns the number of
    /// chains and the entries left because emptcp did not create them.
    /// Refused while an `emptcp run` serves the directory.
    pub fn detach_all(&self) -> Result<(usize, Vec<PathBuf>)> {
        self.remove_all(None)
    }

    /// `detach_all` by the `emptcp run` holding `held`, or by anyone when
    /// None and no `run` serves the directory.
    pub fn remove_all(&self, held: Option<&RunLock>) -> Result<(usize, Vec<PathBuf>)> {
        let Some(sd) = StateDir::open(&self.dir, false)? else {
            return Ok((0, Vec::new()));
        };
        if held.is_none() {
            sd.refuse_if_served()?;
        }
        // any version: the message for a state of another one says
        // `detach --all` first
        let mut st = sd.load_any()?;
        crate::runtime::txn::recover(&sd, &mut st)?;
        let mut first_err = None;
        for p in &st.points {
            if let Err(e) = store::detach_point(&sd, p, true) {
                first_err.get_or_insert(e.context(format!("failed to detach {}", point_name(p))));
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let n = st.points.iter().map(|p| p.chains.len()).sum();
        let left = sd.remove_ours()?;
        Ok((n, left))
    }
    /// Removes the chains, sets and maps `policy` names, in one
    /// transaction (what `emptcp run` applied, when it stops). Returns
    /// "chain NAME" / "set NAME" for each, and whether anything else is
    /// left in the state.
    pub fn retract(&self, policy: &Policy) -> Result<(Vec<String>, bool)> {
        let Some(sd) = StateDir::open(&self.dir, false)? else {
            return Ok((Vec::new(), false));
        };
        let txn = Txn::begin(&sd)?;
        let mut ch = Change::new(&txn.base);
        let named: BTreeSet<&str> = policy.chains.iter().map(|c| c.name.as_str()).collect();
        let mut removed = Vec::new();
        for p in ch.next.points.iter_mut() {
            let before = p.chains.len();
            p.chains.retain(|c| !named.contains(c.spec.name.as_str()));
            if p.chains.len() != before {
                ch.touched.insert(pid(p));
            }
        }
        removed.extend(
            txn.base
                .points
                .iter()
                .flat_map(|p| &p.chains)
                .filter(|c| named.contains(c.spec.name.as_str()))
                .map(|c| format!("chain {}", c.spec.name)),
        );
        ch.drop_empty_points();
        // the file's tables, but not one a chain left in place still uses
        let used: BTreeSet<String> = ch
            .next
            .points
            .iter()
            .flat_map(|p| &p.chains)
            .flat_map(|c| {
                crate::policy::table_refs(&c.spec)
                    .into_iter()
                    .map(|(_, n, _, _)| n.to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let (drop, keep): (Vec<TableState>, Vec<TableState>) = std::mem::take(&mut ch.next.tables)
            .into_iter()
            .partition(|t| {
                policy.tables.iter().any(|s| s.def.name == t.def.name)
                    && !used.contains(&t.def.name)
            });
        removed.extend(
            drop.iter()
                .map(|t| format!("{} {}", t.def.what(), t.def.name)),
        );
        ch.next.tables = keep;
        ch.dropped_tables = drop;
        let left = !ch.next.points.is_empty() || !ch.next.tables.is_empty();
        run_change(&sd, txn, ch)?;
        Ok((removed, left))
    }

    /// The applied chains with their counters.
    pub fn show(&self, name: Option<&str>) -> Result<Vec<ChainView>> {
        let Some(sd) = StateDir::open_shared(&self.dir, true)? else {
            if let Some(n) = name {
                bail!("no chain called \"{n}\"");
            }
            return Ok(Vec::new());
        };
        let st = sd.load()?;
        let mut out = Vec::new();
        for p in &st.points {
            let status = health::check(&sd, p).to_string();
            let walk = walk_length(p);
            let counts = walkcount::PointCounters::of(&sd, p);
            for c in &p.chains {
                if name.is_some_and(|n| n != c.spec.name) {
                    continue;
                }
                let mut stages = Vec::new();
                for (slot, kind) in c.slots.iter().zip(&c.kinds) {
                    let mut counters = BTreeMap::new();
                    if let Some(vals) = counts.slot(*slot) {
                        for (r, (cname, v)) in COUNTER_NAMES.iter().zip(vals).enumerate() {
                            if v > 0 || r < 2 {
                                counters.insert(cname.to_string(), v);
                            }
                        }
                    }
                    stages.push(StageView {
                        slot: *slot,
                        kind: kind.clone(),
                        counters,
                    });
                }
                let how = match &p.attachment {
                    Attachment::Link { how, .. } => how.to_string(),
                    Attachment::Clsact { .. } => "clsact".into(),
                };
                out.push(ChainView {
                    name: c.spec.name.clone(),
                    dev: p.dev.clone(),
                    ifindex: p.ifindex,
                    hook: p.hook,
                    netns: p.netns.clone(),
                    attach: how,
                    generation: p.gen,
                    status: status.clone(),
                    walk,
                    runtime: if p.walk { "walk" } else { "tail-calls" },
                    // the longest walk this point's mix of stages may have
                    walk_max: if p.walk {
                        crate::runtime::store::walk_limit(point_runs(p), point_insns(p))
                    } else {
                        crate::runtime::capacity::MAX_TAIL_CALLS
                    },
                    stages,
                });
            }
        }
        if let Some(n) = name {
            if out.is_empty() {
                bail!("no chain called \"{n}\"");
            }
        }
        Ok(out)
    }

    /// Parses nothing, attaches nothing: loads every object a policy needs
    /// through the verifier with private maps.
    pub fn check(&self, policy: &Policy) -> Result<usize> {
        let mut done: Vec<(StageObject, &str)> = Vec::new();
        let mut n = 0;
        for c in &policy.chains {
            let family = c.hook.family();
            let objs = chain_objects(c)
                .into_iter()
                .chain(std::iter::once(StageObject::Builtin("entry")));
            for o in objs {
                if done.contains(&(o.clone(), family)) {
                    continue;
                }
                let what = format!("chain \"{}\" stage {} ({family})", c.name, o.label());
                let mut open = match &o {
                    StageObject::Builtin(k) => {
                        loader::open(loader::object_bytes(k, family)?, &format!("{k}_{family}"))?
                    }
                    StageObject::File { .. } => loader::open_custom(&o, family, &what)?,
                };
                // no description: its table references name no table
                tables::bind_outers(&mut open, &[], None)?;
                loader::load(open, &what)?;
                done.push((o, family));
                n += 1;
            }
        }
        n += self.check_walks(policy)?;
        Ok(n)
    }

    /// Loads each attach point's walk program, assembled from the file's
    /// chains on it, through the verifier: a walk the kernel refuses runs
    /// by tail calls where they suffice (as `apply` does, with the same
    /// warning), else it is this command's one-line error.
    fn check_walks(&self, policy: &Policy) -> Result<usize> {
        let mut n = 0;
        for p in crate::runtime::capacity::policy_points(policy, self.netns.as_deref()) {
            let chains: Vec<&Chain> = p
                .chains
                .iter()
                .filter_map(|(name, _)| policy.chains.iter().find(|c| c.name == *name))
                .collect();
            let plan = plan_unplaced(&chains, &policy.tables);
            let stages: usize = plan.iter().map(|c| c.stages.len()).sum();
            match store::verify_walk(p.hook.family(), &plan) {
                Ok(Some((w, insns))) => {
                    if loader::verbose() {
                        eprintln!(
                            "emptcp: {} {}: walk of {stages} stages ({w:?}): {insns} instructions verified",
                            p.dev, p.hook
                        );
                    }
                    n += 1;
                }
                Ok(None) => {}
                Err(e) if store::may_fall_back(&e, stages) => {
                    eprintln!("emptcp: warning: {e:#}; one program per stage instead");
                }
                Err(e) => return Err(store::walk_refused(e)),
            }
        }
        Ok(n)
    }

    /// Entry-level counters (slot 0) per family: packets seen, not TCP, parse errors.
    pub fn entry_counters(&self) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
        let mut out = BTreeMap::new();
        let Some(sd) = StateDir::open_shared(&self.dir, true)? else {
            return Ok(out);
        };
        let st = sd.load()?;
        for family in ["xdp", "tc"] {
            if let Ok(m) = pinned_map(&sd, family, "emptcp_stats") {
                let mut vals = slot_counters(&m, 0);
                // a walk counts the packets it sees in its own block
                vals[crate::abi::CNT_RUN as usize] += st
                    .points
                    .iter()
                    .filter(|p| p.hook.family() == family)
                    .filter_map(|p| walkcount::of_point(&sd, p))
                    .map(|b| b.seen())
                    .sum::<u64>();
                let mut c = BTreeMap::new();
                for (cname, v) in COUNTER_NAMES.iter().zip(vals) {
                    c.insert(cname.to_string(), v);
                }
                out.insert(family.to_owned(), c);
            }
        }
        Ok(out)
    }
}

/// `--prune`: takes the chains `policy` does not name out of the next
/// state. Returns "chain NAME" for each.
fn prune_chains(ch: &mut Change, policy: &Policy) -> Vec<String> {
    let keep: BTreeSet<&str> = policy.chains.iter().map(|c| c.name.as_str()).collect();
    let mut removed = Vec::new();
    for p in ch.next.points.iter_mut() {
        let before = p.chains.len();
        p.chains.retain(|c| {
            let k = keep.contains(c.spec.name.as_str());
            if !k {
                removed.push(format!("chain {}", c.spec.name));
            }
            k
        });
        if p.chains.len() != before {
            ch.touched.insert(pid(p));
        }
    }
    removed
}

/// A free id for a new table of `def`'s layout. A dropped table's id
/// stays taken: the old layouts may still look it up until they are
/// retired.
fn free_table_id(ch: &Change, def: &tables::TableDef) -> Result<u8> {
    let layout = def.key.layout();
    let used: BTreeSet<u8> = ch
        .next
        .tables
        .iter()
        .chain(&ch.dropped_tables)
        .filter(|t| t.def.key.layout() == layout)
        .map(|t| t.id)
        .collect();
    (1..=(tables::MAX_TABLES - 1) as u8)
        .find(|i| !used.contains(i))
        .ok_or_else(|| {
            anyhow!(
                "{} {}: no free table id for {} keys ({} in all)",
                def.what(),
                quoted(&def.name),
                def.key,
                tables::MAX_TABLES - 1
            )
        })
}

/// `--prune`: takes the tables `policy` does not name, or names with other
/// key or value types (made anew under a new id), out of the next state.
/// Returns "set NAME" / "map NAME" for each one that goes away.
fn prune_tables(ch: &mut Change, policy: &Policy) -> Vec<String> {
    let mut removed = Vec::new();
    let (keep, drop): (Vec<TableState>, Vec<TableState>) = std::mem::take(&mut ch.next.tables)
        .into_iter()
        .partition(|t| {
            policy.tables.iter().any(|s| {
                s.def.name == t.def.name && s.def.key == t.def.key && s.def.value == t.def.value
            })
        });
    for t in &drop {
        if !policy.tables.iter().any(|s| s.def.name == t.def.name) {
            removed.push(format!("{} {}", t.def.what(), t.def.name));
        }
    }
    ch.next.tables = keep;
    ch.dropped_tables = drop;
    removed
}

/// Plans the touched points of `ch` on fresh slots, checks every limit,
/// then carries the change out in one transaction.
fn run_change(sd: &StateDir, mut txn: Txn, mut ch: Change) -> Result<()> {
    // plan: nothing is created yet
    check_capacity(&ch.next)?;
    check_tables(&ch.next)?;
    let table = |name: &str| -> Result<TableState> {
        ch.next
            .tables
            .iter()
            .find(|t| t.def.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("no set or map called {}", quoted(name)))
    };
    let mut plans = Vec::new();
    for p in ch.next.points.iter() {
        if !ch.touched.contains(&pid(p)) {
            continue;
        }
        let base = txn.base.points.iter().find(|b| pid(b) == pid(p)).cloned();
        let lay = txn.lay_out(p, base.as_ref())?;
        let list: Vec<(&Chain, u16)> = p.chains.iter().map(|c| (&c.spec, c.id)).collect();
        let env = chain::Env {
            ifindex: &|d| store::point_ifindex(p, d),
            table: &table,
        };
        let plan = chain::plan_with(&list, &lay.slots, &env)?;
        plans.push((pid(p), plan, lay));
    }
    for p in ch.next.points.iter_mut() {
        if let Some((_, plan, lay)) = plans.iter().find(|(id, ..)| *id == pid(p)) {
            for (c, pc) in p.chains.iter_mut().zip(plan) {
                c.slots = pc.stages.iter().map(|s| s.slot).collect();
                c.kinds = pc.stages.iter().map(|s| s.kind.clone()).collect();
            }
            p.walk_slot = lay.walk_slot.unwrap_or(0);
        }
        if ch.attach.contains(&pid(p)) {
            p.attachment = store::planned_attachment(sd, p);
        }
    }
    // the old layouts of touched and removed points, retired on commit
    // (but not the counter slots a new walk keeps)
    let kept: BTreeSet<(&str, u16)> = plans
        .iter()
        .flat_map(|(id, _, lay)| lay.kept.iter().map(move |s| (id.0, *s)))
        .collect();
    let mut retire: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    // and the old walks, whose counts go into the slots the new layouts keep
    let mut folds: Vec<(AttachPoint, Vec<u16>)> = Vec::new();
    for b in &txn.base.points {
        if ch.touched.contains(&pid(b)) || ch.removed.iter().any(|r| pid(r) == pid(b)) {
            let family = b.hook.family();
            let (keep, go): (Vec<u16>, Vec<u16>) =
                b.slots().partition(|s| kept.contains(&(family, *s)));
            retire.entry(family).or_default().extend(go);
            if b.walk {
                folds.push((b.clone(), keep));
            }
        }
    }
    let retire: Vec<Retired> = retire
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(f, slots)| Retired {
            family: f.to_owned(),
            slots,
            at_ms: now_ms(),
        })
        .collect();
    let attach: Vec<AttachPoint> = ch
        .next
        .points
        .iter()
        .filter(|p| ch.attach.contains(&pid(p)))
        .cloned()
        .collect();
    // both documents this change will write must fit the state map
    let mut journal = txn.base.clone();
    journal.pending = Some(crate::runtime::state::Pending {
        slots: retire.clone(),
        attach: attach.clone(),
        tables: ch.new_tables.iter().map(|(t, _)| t.clone()).collect(),
    });
    journal.check_fits()?;
    let mut fin = ch.next.clone();
    fin.retired.extend(retire.iter().cloned());
    fin.cleanup.extend(ch.removed.iter().cloned());
    fin.check_fits()?;

    let new_tables: Vec<TableState> = ch.new_tables.iter().map(|(t, _)| t.clone()).collect();
    txn.intend(attach, new_tables)?;
    match carry_out(sd, &mut txn, &mut ch, &plans) {
        Ok(()) => {
            let dropped = std::mem::take(&mut ch.dropped_tables);
            for n in txn.commit(ch.next, retire, ch.removed)? {
                eprintln!("emptcp: {n}");
            }
            // the replaced walks are off their hooks and still in their
            // (retired) slots: their counts go on in the kept slots
            for (old, keep) in &folds {
                if let Err(e) = walkcount::fold(sd, old, |s| keep.contains(&s)) {
                    eprintln!(
                        "emptcp: warning: the counters of {} {}'s old walk were not carried over: {e:#}",
                        old.dev, old.hook
                    );
                }
            }
            // after the commit: no recorded chain names them any more (a
            // stop right before this leaves an unnamed table in a slot,
            // which the next table of that id replaces)
            for t in &dropped {
                tables::uninstall(sd, t);
            }
            Ok(())
        }
        Err(e) => {
            txn.abort()?;
            Err(e)
        }
    }
}

/// The kernel work of a change: new slots written, points attached,
/// existing points switched, removed points' heads emptied.
fn carry_out(
    sd: &StateDir,
    txn: &mut Txn,
    ch: &mut Change,
    plans: &[(
        PointId,
        Vec<chain::PlannedChain>,
        crate::runtime::txn::Layout,
    )],
) -> Result<()> {
    for (t, m) in &ch.new_tables {
        tables::install(sd, t, m)?;
    }
    for (id, plan, lay) in plans {
        let walk = txn.write(id.0, plan, lay)?;
        if let Some(p) = ch.next.points.iter_mut().find(|p| pid(p) == *id) {
            p.walk = walk;
            p.hook_walk = walk;
            if !walk {
                p.walk_slot = 0;
            }
        }
    }
    for p in ch.next.points.iter_mut() {
        let first = p.first_slot();
        let family = p.hook.family();
        if ch.attach.contains(&pid(p)) {
            if ch.touched.contains(&pid(p)) {
                p.gen = p.gen.wrapping_add(1);
            }
            p.gen = p.gen.max(1);
            store::set_attach(sd, family, p.id, first, p.gen)?;
            p.attachment = store::attach_entry(sd, p)?;
        } else if ch.touched.contains(&pid(p)) {
            p.gen = p.gen.wrapping_add(1);
            store::set_attach(sd, family, p.id, first, p.gen)?;
            store::switch_hook(sd, p)?;
        }
    }
    for p in &ch.removed {
        store::set_attach(sd, p.hook.family(), p.id, 0, 0)?;
    }
    for (t, m) in &ch.refills {
        tables::install(sd, t, m)?;
    }
    Ok(())
}

/// Every table a chain names exists, with the key and value types the
/// stage needs: one line naming chain, stage and table when not.
fn check_tables(next: &State) -> Result<()> {
    for p in &next.points {
        for c in &p.chains {
            for (what, name, keyof, want) in crate::policy::table_refs(&c.spec) {
                let t = next.tables.iter().find(|t| t.def.name == name).ok_or_else(|| {
                    anyhow!(
                        "chain {}: {what}: no set or map called {} (declare it with [[set]] or [[map]])",
                        quoted(&c.spec.name),
                        quoted(name)
                    )
                })?;
                crate::policy::check_table_ref(&c.spec.name, &what, keyof, want, &t.def)
                    .map_err(|e| anyhow!(e))?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct StageView {
    pub slot: u16,
    pub kind: String,
    pub counters: BTreeMap<String, u64>,
}

/// A chain as `show` prints it: a header line, then one line per stage.
impl std::fmt::Display for ChainView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} {}{} ({}, generation {}, walk {} of {}){}",
            self.name,
            self.dev,
            self.hook,
            self.netns
                .as_ref()
                .map(|n| format!(" netns {n}"))
                .unwrap_or_default(),
            self.attach,
            self.generation,
            self.walk,
            self.walk_max,
            if self.status == "ok" {
                String::new()
            } else {
                format!("  NOT RUNNING: {}", self.status)
            }
        )?;
        for s in &self.stages {
            let cnt: Vec<String> = s.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "  [{:>4}] {:<12} {}", s.slot, s.kind, cnt.join("  "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
pub struct ChainView {
    pub name: String,
    pub dev: String,
    pub ifindex: u32,
    pub hook: Hook,
    pub netns: Option<String>,
    pub attach: String,
    pub generation: u32,
    /// "ok" when the kernel runs the chain as recorded, else what is wrong
    /// (health.rs).
    pub status: String,
    /// The longest walk of a packet through the chain's attach point (stages).
    pub walk: usize,
    /// How the point walks: "walk" (one program) or "tail-calls" (one
    /// program per stage), and the most stages that allows.
    pub runtime: &'static str,
    pub walk_max: usize,
    pub stages: Vec<StageView>,
}
