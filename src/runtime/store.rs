//! The kernel side of the state directory: stage slots in the family's
//! prog array, the attach table, entry programs and their links, and the
//! pins that keep them. Every function here does one kernel operation and
//! knows nothing of transactions (txn.rs) or of what the user asked for
//! (runtime.rs).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use crate::abi::{types, CNT_MAX};
use crate::kernel::attach::{self, Attachment, LinkHow};
use crate::kernel::loader;
use crate::kernel::netns;
use crate::policy::model::Hook;
use crate::runtime::chain::{self, StageObject};
use crate::runtime::state::{AttachPoint, StateDir};
use crate::stages::Runs;

/// The stage program instances loaded by one command. They stay loaded
/// while the prog array holds them; this keeps their fds until the end.
#[derive(Default)]
pub(crate) struct Objects {
    loaded: Vec<Object>,
}

impl Objects {
    /// The loaded object in which a program called `name` was loaded.
    pub(crate) fn with_prog(&self, name: &str) -> Option<&Object> {
        self.loaded
            .iter()
            .find(|o| o.progs().any(|p| p.name() == name && p.autoload()))
    }
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
        StageObject::File { .. } => loader::open_custom(&stage.object, family, what)?,
    };
    let mut desc = stage.desc;
    let used = crate::tables::assign_binds(std::slice::from_mut(&mut desc), what)?;
    // SAFETY: emptcp_stage is Plain (abi.rs).
    loader::set_rodata(&mut open, "emptcp_stage_desc", unsafe {
        plain::as_bytes(&desc)
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
    // after share_maps: a map libbpf reuses takes the kernel map's name
    crate::tables::bind_outers(&mut open, &used, Some(sd.dir.as_path()))?;
    let mut obj = loader::load(open, what)?;
    loader::pin_new_maps(&mut obj, &dir, &to_pin)?;
    Ok(obj)
}

pub(crate) fn stage_prog_fd(obj: &Object, object: &StageObject) -> Result<i32> {
    let name = object.program();
    let p = obj
        .progs()
        .find(|p| p.name() == name)
        .ok_or_else(|| anyhow!("object {} has no program named {name}", object.label()))?;
    Ok(p.as_fd().as_raw_fd())
}

pub(crate) fn pinned_map(sd: &StateDir, family: &str, name: &str) -> Result<MapHandle> {
    let p = sd.family_dir(family).join(name);
    MapHandle::from_pinned_path(&p).with_context(|| format!("failed to open {}", p.display()))
}

pub(crate) fn u32_key(k: u32) -> [u8; 4] {
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
    let head = crate::abi::head_slot(id);
    let a = types::emptcp_attach {
        first,
        gen,
        ..Default::default()
    };
    if first == 0 {
        // SAFETY: emptcp_attach is Plain (abi.rs).
        amap.update(&u32_key(id), unsafe { plain::as_bytes(&a) }, MapFlags::ANY)?;
        let _ = progs.delete(&u32_key(head));
        return Ok(());
    }
    let fd = slot_prog(&progs, first as u32).with_context(|| format!("slot {first} ({family})"))?;
    progs
        .update(
            &u32_key(head),
            &(fd.as_raw_fd() as u32).to_ne_bytes(),
            MapFlags::ANY,
        )
        .with_context(|| format!("failed to put slot {first} into head slot {head} ({family})"))?;
    // SAFETY: emptcp_attach is Plain (abi.rs).
    amap.update(&u32_key(id), unsafe { plain::as_bytes(&a) }, MapFlags::ANY)?;
    Ok(())
}

/// A new fd of the program in `slot` of a prog array.
pub(crate) fn slot_prog(progs: &MapHandle, slot: u32) -> Result<OwnedFd> {
    // a PROG_ARRAY lookup from user space gives the program's id
    let id = slot_prog_id(progs, slot).context("the slot holds no program")?;
    // SAFETY: plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        bail!("failed to open program {id}: errno {}", -fd);
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The program point `p`'s hook runs: its walk program (in the point's
/// first slot) when its chains walk, so that a packet meets one program
/// and no tail call; else the entry program, which tail-calls the first
/// stage through the head slot.
pub(crate) fn hook_prog(sd: &StateDir, p: &AttachPoint) -> Result<OwnedFd> {
    let family = p.hook.family();
    let first = p.first_slot();
    if p.walk && p.hook_walk && first != 0 {
        let progs = pinned_map(sd, family, "emptcp_progs")?;
        return slot_prog(&progs, first as u32)
            .with_context(|| format!("the walk program of {} {} (slot {first})", p.dev, p.hook));
    }
    let epin = entry_pin(sd, family, p.id);
    libbpf_rs::Program::fd_from_pinned_path(&epin)
        .with_context(|| format!("failed to open {}", epin.display()))
}

/// Makes point `p`'s hook run `hook_prog(p)`: one atomic replacement of
/// the program its link or clsact filter runs (packets meet the old one
/// or the new one).
pub(crate) fn switch_hook(sd: &StateDir, p: &AttachPoint) -> Result<()> {
    let fd = hook_prog(sd, p)?;
    netns::run_in(p.netns.as_deref(), || {
        attach::replace(&p.attachment, &fd, p.hook, p.ifindex)
    })
    .with_context(|| format!("failed to switch the program of {} {}", p.dev, p.hook))
}

/// The most stages one walk program runs.
pub use crate::abi::MAX_WALK;

/// Whether a layout of built-in stages may run as one walk program:
/// always, unless `EMPTCP_RUNTIME=tail` asks for one program per stage
/// (the previous runtime, kept for points with third-party stages and for
/// A/B measurements).
pub fn walk_allowed() -> bool {
    std::env::var("EMPTCP_RUNTIME").map_or(true, |v| v != "tail")
}

/// The most stages of the short walk.
pub use crate::abi::MAX_SHORT_WALK;

/// The most stages of a light walk that runs unrolled; a longer one runs
/// in the loop, which is faster past this length: cost bench, 31
/// `ip_pair` + `pass`, +233..+237 ns unrolled against +199..+202 in the
/// loop (16 stages: +90..+92 against +94), docs/design.md.
const SHORT_LIGHT_WALK: usize = 16;

/// Which walk program runs a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// `emptcp_walk_prog`: a loop over up to MAX_WALK stages whose
    /// objects walk long (stages `walks_long`).
    Long,
    /// `emptcp_walk_short`: unrolled, up to MAX_SHORT_WALK built-in stages.
    Short,
    /// `emptcp_walk_tab`: `emptcp_walk_short` with a set's lookup and a
    /// mark's map looked up inline at its first positions, for a short
    /// walk of light stages only: the spills of that code do not fit the
    /// 512-byte stack beside a heavy stage's frame (set_backup: 400).
    ShortTab,
}

impl Walk {
    /// Every walk program of the walk object.
    pub const ALL: [Walk; 3] = [Walk::Long, Walk::Short, Walk::ShortTab];

    /// The walk program's name in the walk object.
    pub fn prog(self) -> &'static str {
        match self {
            Walk::Long => "emptcp_walk_prog",
            Walk::Short => "emptcp_walk_short",
            Walk::ShortTab => "emptcp_walk_tab",
        }
    }
}

/// The walk program that runs a point of `n` stages, the least capable of
/// which is `runs`, costing the verifier about `insns` (capacity.rs
/// walk_insns); None: one program per stage, by tail calls.
pub fn walk_for(runs: Runs, n: usize, insns: u64) -> Option<Walk> {
    if n == 0 || runs == Runs::TailCalls || !walk_allowed() {
        None
    } else if runs == Runs::AnyWalk && n <= MAX_WALK {
        // every stage light: unrolled when short, else the loop
        Some(if n <= SHORT_LIGHT_WALK {
            Walk::Short
        } else {
            Walk::Long
        })
    } else if n <= MAX_SHORT_WALK && insns <= crate::runtime::capacity::VERIFIER_BUDGET * 9 / 10 {
        // unrolled: every stage verifies as it does alone
        Some(Walk::Short)
    } else {
        None
    }
}

/// The longest walk a point whose least capable stage is `runs` and
/// whose stages cost the verifier `insns` may have.
pub fn walk_limit(runs: Runs, insns: u64) -> usize {
    if walk_for(runs, MAX_WALK, insns).is_some() {
        MAX_WALK
    } else if walk_for(runs, 1, insns).is_some() {
        MAX_SHORT_WALK.max(crate::runtime::capacity::MAX_TAIL_CALLS)
    } else {
        crate::runtime::capacity::MAX_TAIL_CALLS
    }
}

/// The walk program of a planned layout, if one can run it.
pub fn walkable(plan: &[chain::PlannedChain], family: &str) -> Option<Walk> {
    let stages = plan.iter().flat_map(|c| &c.stages);
    let runs = stages
        .clone()
        .map(|s| match s.object {
            StageObject::Builtin(o) if crate::stages::walks_long(o) => Runs::AnyWalk,
            StageObject::Builtin(_) => Runs::ShortWalk,
            _ => Runs::TailCalls,
        })
        .max()
        .unwrap_or(Runs::AnyWalk);
    let insns = stages
        .clone()
        .map(|s| crate::runtime::capacity::walk_insns(family, &s.kind))
        .sum();
    let tables = stages.clone().any(|s| looks_up_inline(&s.desc));
    match walk_for(runs, stages.count(), insns) {
        Some(Walk::Short) if runs == Runs::AnyWalk && tables => Some(Walk::ShortTab),
        w => w,
    }
}

/// Whether a stage looks a table up inline in `emptcp_walk_tab`: a set's
/// selector, or `set_mark` with its mark from a map.
fn looks_up_inline(d: &types::emptcp_stage) -> bool {
    use crate::abi::{KIND_LOOKUP, KIND_SET_MARK, PARAM_TAB_OFF};
    d.kind == KIND_LOOKUP || (d.kind == KIND_SET_MARK && d.param[PARAM_TAB_OFF] != 0)
}

/// A walk's load error when it cannot fall back to tail calls: the
/// verifier's own line, and what to do when the walk was too complex for
/// it (many full set lookups, each a probe of up to 32 slots, in one
/// walk: 48 chains of one addr-set lookup on one hook, where one chain
/// with the set serves every tenant).
pub fn walk_refused(e: anyhow::Error) -> anyhow::Error {
    let m = e.to_string();
    if m.contains("is too complex") || m.contains("is too large") {
        let m = m.trim_end_matches('.');
        return anyhow!(
            "{m}: the walk is too complex for the verifier; put fewer chains on this \
             attach point (one chain looking up a set serves many tenants)"
        );
    }
    e
}

/// Whether a walk of `stages` stages the kernel refused (`e`) may run as
/// one program per stage instead: it fits the tail calls, and the refusal
/// is the walk's own, not an older state's pinned map (which the stage
/// programs share, so they would fail on it too).
pub fn may_fall_back(e: &anyhow::Error, stages: usize) -> bool {
    stages <= crate::runtime::capacity::MAX_TAIL_CALLS
        && e.downcast_ref::<loader::StaleMap>().is_none()
}

/// Loads the walk program of a layout: every stage's description and
/// counter slot in its .rodata (walk.bpf.c).
/// `sd`: share and pin the family's maps there; None (`check`): private
/// maps, dropped with the object.
fn load_walk(
    sd: Option<&StateDir>,
    family: &str,
    plan: &[chain::PlannedChain],
    walk: Walk,
) -> Result<Object> {
    let stages: Vec<&chain::PlannedStage> = plan.iter().flat_map(|c| &c.stages).collect();
    let mut open = loader::open(
        loader::object_bytes("walk", family)?,
        &format!("walk_{family}"),
    )?;
    for mut p in open.progs_mut() {
        let on = p.name() == walk.prog();
        p.set_autoload(on);
    }
    let names: Vec<&str> = plan.iter().map(|c| c.name.as_str()).collect();
    let what = format!("the walk of chains {} ({family})", names.join(", "));
    let mut ds: Vec<types::emptcp_stage> = stages.iter().map(|s| s.desc).collect();
    let used = crate::tables::assign_binds(&mut ds, &what)?;
    let desc_size = std::mem::size_of::<types::emptcp_stage>();
    let mut descs = vec![0u8; desc_size * MAX_WALK];
    let mut slots = vec![0u8; 2 * MAX_WALK];
    for (i, (s, d)) in stages.iter().zip(&ds).enumerate() {
        // SAFETY: emptcp_stage is Plain (abi.rs).
        let b = unsafe { plain::as_bytes(d) };
        descs[i * desc_size..(i + 1) * desc_size].copy_from_slice(b);
        slots[i * 2..i * 2 + 2].copy_from_slice(&s.slot.to_ne_bytes());
    }
    loader::set_rodata(
        &mut open,
        "emptcp_walk_len",
        &(stages.len() as u32).to_ne_bytes(),
    )?;
    loader::set_rodata(&mut open, "emptcp_walk", &descs)?;
    let size = crate::runtime::walkcount::value_size(stages.len());
    open.maps_mut()
        .find(|m| m.name() == crate::runtime::walkcount::MAP)
        .context("walk object has no counter block")?
        .set_value_size(size)?;
    loader::set_rodata(&mut open, "emptcp_walk_slot", &slots)?;
    // the packet's IPv4 addresses and its ports are read once per packet
    // only for the selectors that compare them inline (ip_pair, src/dst, port)
    use crate::abi::{KIND_IP_PAIR, KIND_PORT, KIND_PREFIX};
    for (var, kinds) in [
        ("emptcp_walk_addrs", &[KIND_IP_PAIR, KIND_PREFIX][..]),
        ("emptcp_walk_ports", &[KIND_PORT][..]),
    ] {
        let any = stages.iter().any(|s| kinds.contains(&s.desc.kind));
        loader::set_rodata(&mut open, var, &u32::from(any).to_ne_bytes())?;
    }
    let Some(sd) = sd else {
        crate::tables::bind_outers(&mut open, &used, None)?;
        return loader::load(open, &what);
    };
    let dir = sd.family_dir(family);
    let to_pin = loader::share_maps(&mut open, &dir, &format!("walk ({family})"))?;
    // after share_maps: a map libbpf reuses takes the kernel map's name
    crate::tables::bind_outers(&mut open, &used, Some(sd.dir.as_path()))?;
    let mut obj = loader::load(open, &what)?;
    loader::pin_new_maps(&mut obj, &dir, &to_pin)?;
    Ok(obj)
}

/// Loads a point's walk program through the verifier with private maps,
/// as `apply` will (`check`). Ok(None): the layout runs by tail calls.
pub fn verify_walk(family: &str, plan: &[chain::PlannedChain]) -> Result<Option<(Walk, u32)>> {
    let Some(w) = walkable(plan, family) else {
        return Ok(None);
    };
    let obj = load_walk(None, family, plan, w)?;
    let insns = obj
        .progs()
        .find(|p| p.name() == w.prog())
        .and_then(|p| loader::verified_insns(p.as_fd()))
        .unwrap_or(0);
    Ok(Some((w, insns)))
}

/// Writes a planned layout (the chains of one attach point) into the stage
/// map, zeroes its counters and puts its programs into the slots: one walk
/// program in the first slot when the layout is walkable, else one program
/// per stage. The slots are not reachable yet. Returns whether it walks.
pub(crate) fn write_slots(
    sd: &StateDir,
    family: &str,
    plan: &[chain::PlannedChain],
    lay: &crate::runtime::txn::Layout,
    objs: &mut Objects,
    allow_walk: bool,
) -> Result<bool> {
    // every program through the verifier first (the first load creates and
    // pins the family's maps)
    let mut fds = Vec::new();
    let mut walk = walkable(plan, family).filter(|_| allow_walk);
    if let Some(w) = walk {
        let n: usize = plan.iter().map(|c| c.stages.len()).sum();
        match load_walk(Some(sd), family, plan, w) {
            Ok(obj) => {
                let prog = obj
                    .progs()
                    .find(|p| p.name() == w.prog())
                    .with_context(|| format!("walk object has no {}", w.prog()))?;
                if loader::verbose() {
                    let names: Vec<&str> = plan.iter().map(|c| c.name.as_str()).collect();
                    eprintln!(
                        "emptcp: {family} walk of {n} stages ({w:?}, chains {}): {} instructions verified",
                        names.join(", "),
                        loader::verified_insns(prog.as_fd())
                            .map_or("?".to_owned(), |v| v.to_string())
                    );
                }
                fds.push((
                    lay.walk_slot.unwrap_or(plan[0].stages[0].slot),
                    prog.as_fd().as_raw_fd(),
                    "walk".to_owned(),
                ));
                objs.loaded.push(obj);
            }
            // a walk the kernel refuses still runs one program per stage
            // when that fits the tail calls (on fresh slots: kept counter
            // slots belong to the running walk)
            Err(e) if lay.kept.is_empty() && may_fall_back(&e, n) => {
                eprintln!("emptcp: warning: {e:#}; one program per stage instead");
                walk = None;
            }
            Err(e) => return Err(walk_refused(e)),
        }
    }
    if walk.is_none() {
        for c in plan {
            for s in &c.stages {
                let what = format!("chain \"{}\" stage {} ({family})", c.name, s.kind);
                let obj = load_stage(sd, s, family, &what)?;
                fds.push((s.slot, stage_prog_fd(&obj, &s.object)?, s.kind.clone()));
                objs.loaded.push(obj);
            }
        }
    }
    let stages = pinned_map(sd, family, "emptcp_stages")?;
    let stats = pinned_map(sd, family, "emptcp_stats")?;
    let progs = pinned_map(sd, family, "emptcp_progs")?;
    let ncpu = libbpf_rs::num_possible_cpus()?;
    // one emptcp_stats element per slot: all its counters (abi.h emptcp_counters)
    let zeros = vec![vec![0u8; 8 * CNT_MAX as usize]; ncpu];
    for c in plan {
        for s in c.stages.iter().filter(|s| !lay.kept.contains(&s.slot)) {
            // SAFETY: emptcp_stage is Plain (abi.rs).
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
    Ok(walk.is_some())
}

pub(crate) fn entry_pin(sd: &StateDir, family: &str, id: u32) -> PathBuf {
    sd.family_dir(family).join(format!("entry-{id}"))
}

pub(crate) fn link_pin(sd: &StateDir, family: &str, id: u32) -> PathBuf {
    sd.family_dir(family).join(format!("link-{id}"))
}

/// The clsact handle and priority of attach point `id` (kernels without tcx).
pub(crate) fn clsact_handle(id: u32) -> u32 {
    0xe0 + id
}

/// How attach point `p` will be held once attached: known before
/// attaching, so that the intent can be recorded first.
pub(crate) fn planned_attachment(sd: &StateDir, p: &AttachPoint) -> Attachment {
    let family = p.hook.family();
    if p.hook != Hook::Xdp && !crate::kernel::features::get().tcx {
        return Attachment::Clsact {
            handle: clsact_handle(p.id),
            priority: clsact_handle(p.id),
        };
    }
    Attachment::Link {
        pin: link_pin(sd, family, p.id).display().to_string(),
        how: LinkHow::Pending,
    }
}

/// The id of the program in slot `slot` of a family's prog array.
pub(crate) fn slot_prog_id(progs: &MapHandle, slot: u32) -> Option<u32> {
    progs
        .lookup(&u32_key(slot), MapFlags::ANY)
        .ok()
        .flatten()
        .and_then(|v| {
            v.get(..4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
        })
}

/// Empties stage slots (their programs go once no packet walks them).
pub(crate) fn free_slots(sd: &StateDir, family: &str, slots: &[u16]) {
    // no prog array: nothing was ever put into the slots
    if let Ok(progs) = pinned_map(sd, family, "emptcp_progs") {
        for s in slots {
            let _ = progs.delete(&u32_key(*s as u32));
        }
    }
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
    crate::tables::bind_outers(&mut open, &[], None)?;
    let mut obj = loader::load(open, what)?;
    loader::pin_new_maps(&mut obj, &dir, &to_pin)?;
    Ok(obj)
}

/// Loads the entry program for attach point `id`, pins it and attaches it.
pub(crate) fn attach_entry(sd: &StateDir, p: &AttachPoint) -> Result<Attachment> {
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
    let hook = hook_prog(sd, p)?;
    let res = netns::run_in(p.netns.as_deref(), || {
        attach::attach(
            &hook,
            p.hook,
            p.ifindex,
            p.xdp_mode,
            &lpin,
            clsact_handle(p.id),
        )
    });
    match res {
        Ok(a) => Ok(a),
        Err(e) => {
            let _ = std::fs::remove_file(&epin);
            Err(e.context(format!(
                "failed to attach ({}{}) to {} (ifindex {})",
                p.hook,
                if p.hook == Hook::Xdp {
                    format!(", {:?}", p.xdp_mode).to_lowercase()
                } else {
                    String::new()
                },
                p.dev,
                p.ifindex
            )))
        }
    }
}

/// Detaches an attach point's entry program and removes its pins. With
/// `clear_head` the point's head slot is emptied too (not when the point
/// lives on and is only attached again).
pub(crate) fn detach_point(sd: &StateDir, p: &AttachPoint, clear_head: bool) -> Result<()> {
    let family = p.hook.family();
    if clear_head {
        let _ = set_attach(sd, family, p.id, 0, 0);
    }
    let epin = entry_pin(sd, family, p.id);
    let prog_fd = libbpf_rs::Program::fd_from_pinned_path(&epin).ok();
    // the namespace may be gone: then so is the device and its hooks
    let gone = p.netns.as_deref().is_some_and(|n| {
        netns::netns_inode(Some(n))
            .map(|i| i != p.netns_ino)
            .unwrap_or(true)
    });
    // a link pin goes whatever happens below: it is what holds the link
    if let Attachment::Link { pin, .. } = &p.attachment {
        let _ = std::fs::remove_file(pin);
    }
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
            // a vanished or re-created device took its hooks with it
            let idx = netns::run_in(p.netns.as_deref(), || netns::ifindex(&p.dev, None));
            if idx.is_ok_and(|i| i == p.ifindex) {
                return Err(e);
            }
        }
    }
    let _ = std::fs::remove_file(&epin);
    Ok(())
}

/// A device of an attach point's namespace (redirect targets).
pub(crate) fn point_ifindex(p: &AttachPoint, dev: &str) -> Result<u32> {
    netns::run_in(p.netns.as_deref(), || {
        netns::ifindex(dev, p.netns.as_deref())
    })
}

/// The family-independent maps pinned in the state dir (`emptcp_g_*`,
/// e.g. the event ring buffer).
pub(crate) fn global_pins(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
pub(crate) fn drop_new_global_pins(dir: &std::path::Path, before: &[std::path::PathBuf]) {
    for p in global_pins(dir) {
        if !before.contains(&p) {
            let _ = std::fs::remove_file(&p);
        }
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
