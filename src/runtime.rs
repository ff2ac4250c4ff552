//! Applying, showing and removing chains: the only code that changes what
//! runs in the kernel.
//!
//! `apply` keeps a fixed order so that a failure leaves nothing behind:
//! 1. resolve devices and load every object (nothing reachable yet);
//! 2. write the new stage slots (still unreachable);
//! 3. attach entry programs of new attach points (undone on failure);
//! 4. switch each existing attach point to its new layout: one map update;
//! 5. retire the old slots (freed later, once no packet can walk them);
//! 6. save the state.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};
use serde::Serialize;

use crate::attach::{self, Attachment, XdpMode};
use crate::chain::{self, types, StageObject, CNT_MAX, COUNTER_NAMES, STAGE_SLOTS};
use crate::loader;
use crate::netns;
use crate::policy::{Chain, Hook, Policy};
use crate::state::{now_ms, AttachPoint, ChainState, Retired, State, StateDir};

/// How long retired slots are kept before they are reused: far longer than
/// any packet takes to walk a chain.
const RETIRE_GRACE_MS: u64 = 1000;

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
            dir: PathBuf::from(crate::state::DEFAULT_DIR),
            netns: None,
            xdp_mode: XdpMode::Auto,
        }
    }
}

/// The stage program instances loaded by one command. They stay loaded
/// while the prog array holds them; this keeps their fds until the end.
#[derive(Default)]
pub(crate) struct Objects {
    loaded: Vec<Object>,
}

/// Loads one program instance for a planned stage: its description and
/// slot go into .rodata, so that the verifier knows the next slot and the
/// parameters as constants (direct tail calls, see chain.h).
pub(crate) fn load_stage(
    sd: &StateDir,
    stage: &chain::PlannedStage,
    family: &str,
    what: &str,
) -> Result<Object> {
    let dir = sd.family_dir(family);
    let mut open = match &stage.object {
        StageObject::Builtin(name) => loader::open(
            loader::object_bytes(name, family)?,
            &format!("{name}_{family}"),
        )?,
        StageObject::File { path, program } => loader::open_custom(path, program, family, what)?,
    };
    // SAFETY: emptcp_stage is Plain (chain.rs).
    loader::set_rodata(&mut open, "emptcp_stage_desc", unsafe {
        plain::as_bytes(&stage.desc)
    })
    .with_context(|| format!("{what}: not built with <emptcp/chain.h>"))?;
    loader::set_rodata(
        &mut open,
        "emptcp_stage_slot",
        &(stage.slot as u32).to_ne_bytes(),
    )
    .with_context(|| format!("{what}: not built with <emptcp/chain.h>"))?;
    let to_pin = loader::share_maps(
        &mut open,
        &dir,
        &format!("{} ({family})", stage.object.label()),
    )?;
    let mut obj = loader::load(open, what)?;
    loader::pin_new_maps(&mut obj, &dir, &to_pin)?;
    Ok(obj)
}

fn stage_prog_fd(obj: &Object, object: &StageObject) -> Result<i32> {
    let name = object.program();
    let p = obj
        .progs()
        .find(|p| p.name() == name)
        .ok_or_else(|| anyhow!("object {} has no program named {name}", object.label()))?;
    Ok(p.as_fd().as_raw_fd())
}

/// The objects of a chain's stages.
fn chain_objects(c: &Chain) -> Vec<StageObject> {
    let slots: Vec<u16> = (1..=chain::stage_count(c) as u16).collect();
    chain::plan_with(&[(c, 0)], &slots, &|_| Ok(0))
        .map(|p| {
            p.into_iter()
                .flat_map(|pc| pc.stages.into_iter().map(|s| s.object))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn pinned_map(sd: &StateDir, family: &str, name: &str) -> Result<MapHandle> {
    let p = sd.family_dir(family).join(name);
    MapHandle::from_pinned_path(&p).with_context(|| format!("failed to open {}", p.display()))
}

fn u32_key(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

/// Points attach point `id` of `family` at the stage in slot `first` (0:
/// nothing to run). The entry program jumps to the point's head slot with a
/// constant key (a direct jump), so the switch is the update of that slot
/// (one atomic PROG_ARRAY update); `emptcp_attach` says whether anything
/// runs and keeps the generation for `show`. Either order of the two
/// updates is safe: both chain lists stay populated until retired.
pub(crate) fn set_attach(sd: &StateDir, family: &str, id: u32, first: u16, gen: u32) -> Result<()> {
    let progs = pinned_map(sd, family, "emptcp_progs")?;
    let amap = pinned_map(sd, family, "emptcp_attach")?;
    let head = chain::head_slot(id);
    let a = types::emptcp_attach {
        first,
        gen,
        ..Default::default()
    };
    if first == 0 {
        // SAFETY: emptcp_attach is Plain (chain.rs).
        amap.update(&u32_key(id), unsafe { plain::as_bytes(&a) }, MapFlags::ANY)?;
        let _ = progs.delete(&u32_key(head));
        return Ok(());
    }
    // a PROG_ARRAY lookup from user space gives the program's id
    let pid = progs
        .lookup(&u32_key(first as u32), MapFlags::ANY)?
        .and_then(|v| {
            v.get(..4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
        })
        .with_context(|| format!("slot {first} ({family}) holds no program"))?;
    // SAFETY: plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(pid) };
    if fd < 0 {
        bail!(
            "failed to open program {pid} of slot {first} ({family}): errno {}",
            -fd
        );
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    progs
        .update(
            &u32_key(head),
            &(fd.as_raw_fd() as u32).to_ne_bytes(),
            MapFlags::ANY,
        )
        .with_context(|| format!("failed to put slot {first} into head slot {head} ({family})"))?;
    // SAFETY: emptcp_attach is Plain (chain.rs).
    amap.update(&u32_key(id), unsafe { plain::as_bytes(&a) }, MapFlags::ANY)?;
    Ok(())
}

/// Frees retired slots older than the grace period (removes their programs).
fn free_retired(sd: &StateDir, st: &mut State, force_wait: bool) -> Result<()> {
    if force_wait {
        if let Some(newest) = st.retired.iter().map(|r| r.at_ms).max() {
            let age = now_ms().saturating_sub(newest);
            if age < RETIRE_GRACE_MS {
                std::thread::sleep(Duration::from_millis(RETIRE_GRACE_MS - age));
            }
        }
    }
    let now = now_ms();
    let mut keep = Vec::new();
    for r in std::mem::take(&mut st.retired) {
        if now.saturating_sub(r.at_ms) < RETIRE_GRACE_MS {
            keep.push(r);
            continue;
        }
        // no prog array: nothing was ever put into the slots
        if let Ok(progs) = pinned_map(sd, &r.family, "emptcp_progs") {
            for s in &r.slots {
                let _ = progs.delete(&u32_key(*s as u32));
            }
        }
    }
    st.retired = keep;
    Ok(())
}

/// Picks `n` free slots of a family.
fn alloc_slots(st: &State, family: &str, taken: &[u16], n: usize) -> Option<Vec<u16>> {
    let used = st.used_slots(family);
    let v: Vec<u16> = (1..STAGE_SLOTS)
        .filter(|s| used.binary_search(s).is_err() && !taken.contains(s))
        .take(n)
        .collect();
    (v.len() == n).then_some(v)
}

/// Writes a planned layout into the stage map, zeroes its counters and puts
/// the programs into the slots. The slots are not reachable yet.
pub(crate) fn write_slots(
    sd: &StateDir,
    family: &str,
    plan: &[chain::PlannedChain],
    objs: &mut Objects,
) -> Result<()> {
    // every stage through the verifier first (the first load creates and
    // pins the family's maps)
    let mut fds = Vec::new();
    for c in plan {
        for s in &c.stages {
            let what = format!("chain \"{}\" stage {} ({family})", c.name, s.kind);
            let obj = load_stage(sd, s, family, &what)?;
            fds.push((s.slot, stage_prog_fd(&obj, &s.object)?, s.kind.clone()));
            objs.loaded.push(obj);
        }
    }
    let stages = pinned_map(sd, family, "emptcp_stages")?;
    let stats = pinned_map(sd, family, "emptcp_stats")?;
    let progs = pinned_map(sd, family, "emptcp_progs")?;
    let ncpu = libbpf_rs::num_possible_cpus()?;
    // one emptcp_stats element per slot: all its counters (abi.h emptcp_counters)
    let zeros = vec![vec![0u8; 8 * CNT_MAX as usize]; ncpu];
    for c in plan {
        for s in &c.stages {
            // SAFETY: emptcp_stage is Plain (chain.rs).
            let bytes = unsafe { plain::as_bytes(&s.desc) };
            stages.update(&u32_key(s.slot as u32), bytes, MapFlags::ANY)?;
            stats.update_percpu(&u32_key(s.slot as u32), &zeros, MapFlags::ANY)?;
        }
    }
    for (slot, fd, kind) in fds {
        progs
            .update(
                &u32_key(slot as u32),
                &(fd as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .with_context(|| format!("failed to put {kind} into slot {slot}"))?;
    }
    Ok(())
}

fn entry_pin(sd: &StateDir, family: &str, id: u32) -> PathBuf {
    sd.family_dir(family).join(format!("entry-{id}"))
}

fn link_pin(sd: &StateDir, family: &str, id: u32) -> PathBuf {
    sd.family_dir(family).join(format!("link-{id}"))
}

/// Loads the entry program of attach point `id` (its attach_id set in
/// .rodata), sharing the family's pinned maps.
pub(crate) fn load_entry(sd: &StateDir, family: &str, id: u32, what: &str) -> Result<Object> {
    let dir = sd.family_dir(family);
    let mut open = loader::open(
        loader::object_bytes("entry", family)?,
        &format!("entry_{family}"),
    )?;
    loader::set_rodata(&mut open, "attach_id", &id.to_ne_bytes())?;
    let to_pin = loader::share_maps(&mut open, &dir, &format!("entry ({family})"))?;
    let mut obj = loader::load(open, what)?;
    loader::pin_new_maps(&mut obj, &dir, &to_pin)?;
    Ok(obj)
}

/// Loads the entry program for attach point `id`, pins it and attaches it.
fn attach_entry(sd: &StateDir, rt: &Runtime, p: &AttachPoint) -> Result<Attachment> {
    let family = p.hook.family();
    let obj = load_entry(
        sd,
        family,
        p.id,
        &format!("entry program for {} {}", p.dev, p.hook),
    )?;
    let epin = entry_pin(sd, family, p.id);
    let _ = std::fs::remove_file(&epin);
    let mut prog = obj
        .progs_mut()
        .find(|pr| pr.name() == "emptcp_entry")
        .context("entry object has no emptcp_entry")?;
    prog.pin(&epin)
        .with_context(|| format!("failed to pin {}", epin.display()))?;
    let lpin = link_pin(sd, family, p.id);
    let _ = std::fs::remove_file(&lpin);
    let res = netns::run_in(p.netns.as_deref(), || {
        attach::attach(&prog, p.hook, p.ifindex, rt.xdp_mode, &lpin, 0xe0 + p.id)
    });
    match res {
        Ok(a) => Ok(a),
        Err(e) => {
            let _ = std::fs::remove_file(&epin);
            Err(e.context(format!(
                "failed to attach ({}{}) to {} (ifindex {})",
                p.hook,
                if p.hook == Hook::Xdp {
                    format!(", {:?}", rt.xdp_mode).to_lowercase()
                } else {
                    String::new()
                },
                p.dev,
                p.ifindex
            )))
        }
    }
}

/// Detaches an attach point's entry program and removes its pins.
fn detach_point(sd: &StateDir, p: &AttachPoint) -> Result<()> {
    let family = p.hook.family();
    let _ = set_attach(sd, family, p.id, 0, 0);
    let epin = entry_pin(sd, family, p.id);
    let prog_fd = libbpf_rs::Program::fd_from_pinned_path(&epin).ok();
    // the namespace may be gone: then so is the device and its hooks
    let gone = p.netns.as_deref().is_some_and(|n| {
        netns::netns_inode(Some(n))
            .map(|i| i != p.netns_ino)
            .unwrap_or(true)
    });
    if !gone {
        let r = netns::run_in(p.netns.as_deref(), || {
            attach::detach(
                &p.attachment,
                p.hook,
                p.ifindex,
                prog_fd.as_ref().map(|f| f.as_fd()),
            )
        });
        if let Err(e) = r {
            // a vanished device took its hooks with it
            if netns::run_in(p.netns.as_deref(), || netns::ifindex(&p.dev, None)).is_ok() {
                return Err(e);
            }
        }
    }
    if let Attachment::Link { pin, .. } = &p.attachment {
        let _ = std::fs::remove_file(pin);
    }
    let _ = std::fs::remove_file(&epin);
    Ok(())
}

/// A device of an attach point's namespace (redirect targets).
fn point_ifindex(p: &AttachPoint, dev: &str) -> Result<u32> {
    netns::run_in(p.netns.as_deref(), || {
        netns::ifindex(dev, p.netns.as_deref())
    })
}

fn point_key(netns: &Option<String>, dev: &str, hook: Hook) -> (Option<String>, String, Hook) {
    (netns.clone(), dev.to_owned(), hook)
}

/// The family-independent maps pinned in the state dir (`emptcp_g_*`,
/// e.g. the event ring buffer).
fn global_pins(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("emptcp_g_"))
        })
        .collect();
    v.sort();
    v
}

/// A failed apply leaves no new shared map behind: the programs of its
/// retired slots hold their own references, and the next apply that needs
/// the map creates it again.
fn drop_new_global_pins(dir: &std::path::Path, before: &[std::path::PathBuf]) {
    for p in global_pins(dir) {
        if !before.contains(&p) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// What `apply` did, for printing.
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
        let v = crate::netns::run_in(ns.as_deref(), || {
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

#[derive(Debug, Serialize)]
pub struct ApplyReport {
    pub applied: Vec<String>,
    pub attached: Vec<String>,
}

impl Runtime {
    fn chain_netns(&self, c: &Chain) -> Option<String> {
        c.netns.clone().or_else(|| self.netns.clone())
    }

    /// Creates or atomically replaces the chains of `policy`.
    pub fn apply(&self, policy: &Policy) -> Result<ApplyReport> {
        // 1. devices first: a missing one changes nothing
        let mut ifindexes = Vec::new();
        for c in &policy.chains {
            let ns = self.chain_netns(c);
            let idx = netns::run_in(ns.as_deref(), || netns::ifindex(&c.dev, ns.as_deref()))
                .with_context(|| format!("chain \"{}\"", c.name))?;
            let ino = netns::netns_inode(ns.as_deref())?;
            ifindexes.push((idx, ino));
        }
        let sd = StateDir::open(&self.dir, true)?.expect("created");
        let mut st = sd.load()?;
        free_retired(&sd, &mut st, false)?;
        let old = st.clone();
        let globals_before = global_pins(&sd.dir);

        // new chain lists per attach point
        let mut touched: Vec<(Option<String>, String, Hook)> = Vec::new();
        for (c, (idx, ino)) in policy.chains.iter().zip(&ifindexes) {
            let ns = self.chain_netns(c);
            let key = point_key(&ns, &c.dev, c.hook);
            let mut spec = c.clone();
            spec.netns = ns.clone();
            let id = match st.find_chain(&c.name) {
                Some((pi, ci)) => {
                    let p = &mut st.points[pi];
                    let same = point_key(&p.netns, &p.dev, p.hook) == key && p.ifindex == *idx;
                    if same {
                        p.chains[ci].spec = spec;
                        if !touched.contains(&key) {
                            touched.push(key);
                        }
                        continue;
                    }
                    let old_key = point_key(&p.netns, &p.dev, p.hook);
                    let id = p.chains.remove(ci).id;
                    if !touched.contains(&old_key) {
                        touched.push(old_key);
                    }
                    id
                }
                None => st.alloc_chain_id(),
            };
            let cs = ChainState {
                id,
                spec,
                slots: Vec::new(),
                kinds: Vec::new(),
            };
            match st.points.iter_mut().find(|p| point_key(&p.netns, &p.dev, p.hook) == key) {
                Some(p) if p.ifindex == *idx && p.netns_ino == *ino => p.chains.push(cs),
                Some(_) => bail!(
                    "chain \"{}\": {} {} was replaced since emptcp attached to it; `emptcp detach` its chains first",
                    c.name,
                    c.dev,
                    c.hook
                ),
                None => {
                    let family = c.hook.family();
                    let taken: Vec<u32> = st.points.iter().filter(|p| p.hook.family() == family).map(|p| p.id).collect();
                    let aid = (1..chain::MAX_ATTACH)
                        .find(|i| !taken.contains(i))
                        .ok_or_else(|| anyhow!("no free attach point left for {family}"))?;
                    st.points.push(AttachPoint {
                        id: aid,
                        netns: ns.clone(),
                        netns_ino: *ino,
                        dev: c.dev.clone(),
                        ifindex: *idx,
                        hook: c.hook,
                        xdp_mode: self.xdp_mode,
                        attachment: Attachment::Link { pin: String::new(), how: "pending".into() },
                        gen: 0,
                        chains: vec![cs],
                    });
                }
            }
            if !touched.contains(&key) {
                touched.push(key);
            }
        }

        let mut objs = Objects::default();

        // 2. lay out and write the touched points on fresh slots
        let mut new_slots: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
        let mut plans = Vec::new();
        for key in &touched {
            let pi = st
                .points
                .iter()
                .position(|p| point_key(&p.netns, &p.dev, p.hook) == *key)
                .expect("touched point exists");
            let p = &st.points[pi];
            let family = p.hook.family();
            let n: usize = p.chains.iter().map(|c| chain::stage_count(&c.spec)).sum();
            let taken = new_slots.entry(family).or_default();
            let slots = match alloc_slots(&st, family, taken, n) {
                Some(s) => s,
                None => {
                    free_retired(&sd, &mut st, true)?;
                    alloc_slots(&st, family, new_slots.entry(family).or_default(), n).ok_or_else(
                        || anyhow!("not enough free stage slots for {family} ({n} needed)"),
                    )?
                }
            };
            new_slots.entry(family).or_default().extend(&slots);
            let p = &st.points[pi];
            let list: Vec<(&Chain, u16)> = p.chains.iter().map(|c| (&c.spec, c.id)).collect();
            let plan = chain::plan_with(&list, &slots, &|d| point_ifindex(p, d))?;
            if let Err(e) = write_slots(&sd, family, &plan, &mut objs) {
                // nothing reachable changed: keep the old state, and retire
                // the slots written so far so that their programs go away
                let mut keep = old;
                keep.retired = std::mem::take(&mut st.retired);
                for (fam, slots) in new_slots {
                    keep.retired.push(Retired {
                        family: fam.to_owned(),
                        slots,
                        at_ms: now_ms(),
                    });
                }
                sd.save(&keep)?;
                drop_new_global_pins(&sd.dir, &globals_before);
                return Err(e);
            }
            plans.push((pi, plan));
        }

        // 3. attach new points; undo them all if one fails
        let mut attached_now: Vec<usize> = Vec::new();
        for (pi, plan) in &plans {
            let p = st.points[*pi].clone();
            let fresh = matches!(&p.attachment, Attachment::Link { how, .. } if how == "pending");
            if !fresh || plan.is_empty() {
                continue;
            }
            let first = plan[0].stages[0].slot;
            set_attach(&sd, p.hook.family(), p.id, first, 1)?;
            match attach_entry(&sd, self, &p) {
                Ok(att) => {
                    st.points[*pi].attachment = att;
                    st.points[*pi].gen = 1;
                    attached_now.push(*pi);
                }
                Err(e) => {
                    let _ = set_attach(&sd, p.hook.family(), p.id, 0, 0);
                    for done in &attached_now {
                        let _ = detach_point(&sd, &st.points[*done]);
                    }
                    // the slots written above were never reachable
                    let mut keep = old;
                    keep.retired = std::mem::take(&mut st.retired);
                    for (fam, slots) in new_slots {
                        keep.retired.push(Retired {
                            family: fam.to_owned(),
                            slots,
                            at_ms: now_ms(),
                        });
                    }
                    sd.save(&keep)?;
                    drop_new_global_pins(&sd.dir, &globals_before);
                    return Err(e);
                }
            }
        }

        // 4. switch existing points: one update each
        for (pi, plan) in &plans {
            if attached_now.contains(pi) {
                continue;
            }
            let p = &mut st.points[*pi];
            let family = p.hook.family();
            p.gen = p.gen.wrapping_add(1);
            let first = plan
                .first()
                .and_then(|c| c.stages.first())
                .map(|s| s.slot)
                .unwrap_or(0);
            set_attach(&sd, family, p.id, first, p.gen)?;
        }

        // record slots; 5. retire what the old layouts used
        let mut report = ApplyReport {
            applied: Vec::new(),
            attached: Vec::new(),
        };
        for (pi, plan) in &plans {
            let p = &mut st.points[*pi];
            for (c, pc) in p.chains.iter_mut().zip(plan) {
                c.slots = pc.stages.iter().map(|s| s.slot).collect();
                c.kinds = pc.stages.iter().map(|s| s.kind.clone()).collect();
            }
            if attached_now.contains(pi) {
                report.attached.push(format!(
                    "{} {}{}",
                    p.dev,
                    p.hook,
                    p.netns
                        .as_ref()
                        .map(|n| format!(" (netns {n})"))
                        .unwrap_or_default()
                ));
            }
        }
        for op in &old.points {
            let key = point_key(&op.netns, &op.dev, op.hook);
            if !touched.contains(&key) {
                continue;
            }
            let slots: Vec<u16> = op
                .chains
                .iter()
                .flat_map(|c| c.slots.iter().copied())
                .collect();
            if !slots.is_empty() {
                st.retired.push(Retired {
                    family: op.hook.family().to_owned(),
                    slots,
                    at_ms: now_ms(),
                });
            }
        }
        // points left without chains
        let mut i = 0;
        while i < st.points.len() {
            if st.points[i].chains.is_empty() {
                detach_point(&sd, &st.points[i])?;
                st.points.remove(i);
            } else {
                i += 1;
            }
        }
        report.applied = policy.chains.iter().map(|c| c.name.clone()).collect();
        sd.save(&st)?;
        Ok(report)
    }

    /// Removes one chain (its attach point goes when it was the last).
    pub fn detach(&self, name: &str) -> Result<()> {
        let Some(sd) = StateDir::open(&self.dir, false)? else {
            bail!("no chain called \"{name}\" (nothing applied)");
        };
        let mut st = sd.load()?;
        free_retired(&sd, &mut st, false)?;
        let (pi, ci) = st
            .find_chain(name)
            .ok_or_else(|| anyhow!("no chain called \"{name}\""))?;
        let old_slots: Vec<u16> = st.points[pi]
            .chains
            .iter()
            .flat_map(|c| c.slots.iter().copied())
            .collect();
        let family = st.points[pi].hook.family();
        st.points[pi].chains.remove(ci);
        if st.points[pi].chains.is_empty() {
            let p = st.points.remove(pi);
            detach_point(&sd, &p)?;
        } else {
            let n: usize = st.points[pi]
                .chains
                .iter()
                .map(|c| chain::stage_count(&c.spec))
                .sum();
            let slots = match alloc_slots(&st, family, &[], n) {
                Some(s) => s,
                None => {
                    free_retired(&sd, &mut st, true)?;
                    alloc_slots(&st, family, &[], n)
                        .ok_or_else(|| anyhow!("not enough free stage slots"))?
                }
            };
            let p = &st.points[pi];
            let list: Vec<(&Chain, u16)> = p.chains.iter().map(|c| (&c.spec, c.id)).collect();
            let plan = chain::plan_with(&list, &slots, &|d| point_ifindex(p, d))?;
            let mut objs = Objects::default();
            write_slots(&sd, family, &plan, &mut objs)?;
            let p = &mut st.points[pi];
            p.gen = p.gen.wrapping_add(1);
            set_attach(&sd, family, p.id, slots[0], p.gen)?;
            for (c, pc) in p.chains.iter_mut().zip(&plan) {
                c.slots = pc.stages.iter().map(|s| s.slot).collect();
                c.kinds = pc.stages.iter().map(|s| s.kind.clone()).collect();
            }
        }
        st.retired.push(Retired {
            family: family.to_owned(),
            slots: old_slots,
            at_ms: now_ms(),
        });
        sd.save(&st)?;
        Ok(())
    }

    /// Removes every chain, link, program and pin emptcp made.
    pub fn detach_all(&self) -> Result<usize> {
        let Some(sd) = StateDir::open(&self.dir, false)? else {
            return Ok(0);
        };
        let st = sd.load().unwrap_or_default();
        let mut first_err = None;
        for p in &st.points {
            if let Err(e) = detach_point(&sd, p) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let n = st.points.iter().map(|p| p.chains.len()).sum();
        std::fs::remove_dir_all(&sd.dir)
            .with_context(|| format!("failed to remove {}", sd.dir.display()))?;
        Ok(n)
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
            let family = p.hook.family();
            let stats = pinned_map(&sd, family, "emptcp_stats").ok();
            for c in &p.chains {
                if name.is_some_and(|n| n != c.spec.name) {
                    continue;
                }
                let mut stages = Vec::new();
                for (slot, kind) in c.slots.iter().zip(&c.kinds) {
                    let mut counters = BTreeMap::new();
                    if let Some(m) = &stats {
                        let vals = slot_counters(m, *slot as u32);
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
                    Attachment::Link { how, .. } => how.clone(),
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
                let open = match &o {
                    StageObject::Builtin(k) => {
                        loader::open(loader::object_bytes(k, family)?, &format!("{k}_{family}"))?
                    }
                    StageObject::File { path, program } => {
                        loader::open_custom(path, program, family, &what)?
                    }
                };
                loader::load(open, &what)?;
                done.push((o, family));
                n += 1;
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
        for family in ["xdp", "tc"] {
            if let Ok(m) = pinned_map(&sd, family, "emptcp_stats") {
                let mut c = BTreeMap::new();
                for (cname, v) in COUNTER_NAMES.iter().zip(slot_counters(&m, 0)) {
                    c.insert(cname.to_string(), v);
                }
                out.insert(family.to_owned(), c);
            }
        }
        Ok(out)
    }
}

/// The counters of `slot` (indexed by abi.h enum emptcp_counter), summed
/// over CPUs; zeros when the slot cannot be read.
pub fn slot_counters(m: &MapHandle, slot: u32) -> [u64; CNT_MAX as usize] {
    let mut out = [0u64; CNT_MAX as usize];
    let Some(cpus) = m
        .lookup_percpu(&u32_key(slot), MapFlags::ANY)
        .ok()
        .flatten()
    else {
        return out;
    };
    for v in cpus {
        for (o, c) in out.iter_mut().zip(v.chunks_exact(8)) {
            *o += u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
        }
    }
    out
}

#[derive(Debug, Serialize)]
pub struct StageView {
    pub slot: u16,
    pub kind: String,
    pub counters: BTreeMap<String, u64>,
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
    pub stages: Vec<StageView>,
}

/// True when `path` is a directory emptcp can use (for tests and show).
pub fn state_exists(dir: &Path) -> bool {
    dir.join("state").exists()
}
