//! One change of what runs in the kernel, safe against a `kill -9` at any
//! point. A change goes through four steps, each recorded before the
//! kernel is touched:
//!
//! 1. `begin`: the recorded state is made whole first: an earlier change
//!    that was interrupted is rolled back (`rollback`), attach points a
//!    committed change removed are detached (`cleanup`), pins of ours that
//!    no record names are removed, and retired slots past their grace
//!    period are emptied;
//! 2. `intend`: the new stage slots and the attach points about to be
//!    attached are written into the document's `pending` record;
//! 3. the kernel work: slots written (unreachable), entry programs
//!    attached, existing points switched with one map update each;
//! 4. `commit`: the new document in one map update, the old layouts'
//!    slots retired (freed after the grace period, once no packet can walk
//!    them), removed points left for cleanup.
//!
//! `abort` and a later command's rollback are the same code: heads of the
//! committed points put back on their layouts, pending attach points
//! detached, pending slots retired. Slots in use by the committed layout,
//! by retired layouts or by the change itself are never handed out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::abi::STAGE_SLOTS;
use crate::runtime::chain::{self, PlannedChain};
use crate::runtime::state::{now_ms, AttachPoint, ChainState, Pending, Retired, State, StateDir};
use crate::runtime::statedir::{is_family_pin, FAMILIES};
use crate::runtime::store::{self, Objects};
use crate::stages::Runs;

/// How long retired slots are kept before they are reused: far longer than
/// any packet takes to walk a chain.
pub const RETIRE_GRACE_MS: u64 = 1000;

/// A change under way on a locked state directory.
pub struct Txn<'a> {
    sd: &'a StateDir,
    /// The committed state the change starts from.
    pub base: State,
    pending: Pending,
    /// Slots handed out to this change.
    taken: Vec<(&'static str, u16)>,
    objs: Objects,
    globals_before: Vec<PathBuf>,
    /// What making the recorded state whole did, one line each.
    pub notes: Vec<String>,
}

/// Puts the head slot and the hook program of every committed point back
/// on its layout.
fn restore_heads(sd: &StateDir, st: &State) {
    for p in &st.points {
        let first = p.first_slot();
        let _ = store::set_attach(sd, p.hook.family(), p.id, first, p.gen);
        let _ = store::switch_hook(sd, p);
    }
}

/// Takes back an interrupted change (`st.pending`): nothing it created
/// stays reachable, its slots are retired.
fn rollback(sd: &StateDir, st: &mut State) -> Option<String> {
    let p = st.pending.take()?;
    let committed: BTreeSet<(&str, u32)> =
        st.points.iter().map(|q| (q.hook.family(), q.id)).collect();
    for a in &p.attach {
        // a committed point being attached again keeps its head slot
        let fresh = !committed.contains(&(a.hook.family(), a.id));
        let _ = store::detach_point(sd, a, fresh);
    }
    restore_heads(sd, st);
    for t in &p.tables {
        crate::tables::uninstall(sd, t);
    }
    let n: usize = p.slots.iter().map(|r| r.slots.len()).sum();
    for r in p.slots {
        st.retired.push(Retired {
            at_ms: now_ms(),
            ..r
        });
    }
    Some(format!(
        "rolled back an unfinished change ({n} stage slots, {} attach points)",
        p.attach.len()
    ))
}

/// Detaches the points a committed change removed; those that cannot be
/// detached now stay listed.
fn cleanup(sd: &StateDir, st: &mut State) -> Vec<String> {
    let mut notes = Vec::new();
    for p in std::mem::take(&mut st.cleanup) {
        if let Err(e) = store::detach_point(sd, &p, true) {
            notes.push(format!(
                "{} {}: failed to detach: {e:#} (tried again by the next command)",
                p.dev, p.hook
            ));
            st.cleanup.push(p);
        }
    }
    notes
}

/// Entry and link pins that no record names: left by a command killed
/// before it could record them (or by an older emptcp). Removing a link's
/// pin detaches it.
fn remove_orphans(sd: &StateDir, st: &State) -> Vec<String> {
    let mut notes = Vec::new();
    for fam in FAMILIES {
        let known: BTreeSet<u32> = st
            .points
            .iter()
            .chain(&st.cleanup)
            .chain(st.pending.iter().flat_map(|p| &p.attach))
            .filter(|p| p.hook.family() == fam)
            .map(|p| p.id)
            .collect();
        let dir = sd.family_dir(fam);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_family_pin(&name) || name.starts_with("emptcp_") {
                continue;
            }
            let id = name.rsplit('-').next().and_then(|n| n.parse::<u32>().ok());
            if id.is_some_and(|id| !known.contains(&id)) && std::fs::remove_file(e.path()).is_ok() {
                notes.push(format!("removed {fam}/{name}, which no record named"));
            }
        }
    }
    notes
}

/// Empties retired slots older than the grace period (all of them, after
/// waiting, with `wait`).
pub fn free_retired(sd: &StateDir, st: &mut State, wait: bool) {
    if wait {
        if let Some(newest) = st.retired.iter().map(|r| r.at_ms).max() {
            let age = now_ms().saturating_sub(newest);
            if age < RETIRE_GRACE_MS {
                std::thread::sleep(Duration::from_millis(RETIRE_GRACE_MS - age));
            }
        }
    }
    let now = now_ms();
    let (keep, free): (Vec<Retired>, Vec<Retired>) = std::mem::take(&mut st.retired)
        .into_iter()
        .partition(|r| now.saturating_sub(r.at_ms) < RETIRE_GRACE_MS);
    for r in free {
        store::free_slots(sd, &r.family, &r.slots);
    }
    st.retired = keep;
}

/// Makes the recorded state whole (step 1 above) and saves it when that
/// changed anything. Returns what it did.
pub fn recover(sd: &StateDir, st: &mut State) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let before = st.retired.len();
    notes.extend(rollback(sd, st));
    notes.extend(cleanup(sd, st));
    notes.extend(remove_orphans(sd, st));
    free_retired(sd, st, false);
    if !notes.is_empty() || st.retired.len() != before {
        sd.save(st)?;
    }
    Ok(notes)
}

/// Where a touched point's new layout goes: a slot per stage and, when it
/// will run as a walk program, a fresh slot for that program.
pub struct Layout {
    pub slots: Vec<u16>,
    pub walk_slot: Option<u16>,
    /// Counter slots of chains the change leaves alone, kept from the
    /// running walk (their counters go on counting).
    pub kept: BTreeSet<u16>,
}

impl<'a> Txn<'a> {
    pub fn begin(sd: &'a StateDir) -> Result<Txn<'a>> {
        let mut base = sd.load()?;
        let notes = recover(sd, &mut base)?;
        Ok(Txn {
            sd,
            base,
            pending: Pending::default(),
            taken: Vec::new(),
            objs: Objects::default(),
            globals_before: store::global_pins(&sd.dir),
            notes,
        })
    }

    fn used_slots(&self, family: &str) -> BTreeSet<u16> {
        let mut used: BTreeSet<u16> = self.base.used_slots(family).into_iter().collect();
        used.extend(
            self.base
                .cleanup
                .iter()
                .filter(|p| p.hook.family() == family)
                .flat_map(|p| p.slots()),
        );
        used.extend(
            self.taken
                .iter()
                .filter(|(f, _)| *f == family)
                .map(|(_, s)| *s),
        );
        used
    }

    /// `n` stage slots of `family` that nothing uses: not the committed
    /// layouts, not retired ones, not earlier requests of this change.
    /// Waits out the grace period of retired slots when short.
    pub fn alloc_slots(&mut self, family: &'static str, n: usize) -> Result<Vec<u16>> {
        for second_try in [false, true] {
            if second_try {
                free_retired(self.sd, &mut self.base, true);
            }
            let used = self.used_slots(family);
            let v: Vec<u16> = (1..STAGE_SLOTS)
                .filter(|s| !used.contains(s))
                .take(n)
                .collect();
            if v.len() == n {
                self.taken.extend(v.iter().map(|s| (family, *s)));
                return Ok(v);
            }
        }
        Err(anyhow!(
            "not enough free stage slots for {family} ({n} needed, {} in all)",
            STAGE_SLOTS - 1
        ))
    }

    /// Allocates a touched point's slots. A walk of header and set stages
    /// replacing a walk keeps the counter slots of every chain whose spec
    /// did not change: the running
    /// walk only counts in them (its program has a slot of its own), so
    /// replacing one chain among 100 allocates, verifies and retires for that
    /// one, and the others' counters survive it. Anything else, fresh slots.
    pub fn lay_out(&mut self, p: &AttachPoint, base: Option<&AttachPoint>) -> Result<Layout> {
        let family = p.hook.family();
        let runs = crate::runtime::point_runs(p);
        let n = crate::runtime::walk_length(p);
        let walks = store::walk_for(runs, n, crate::runtime::point_insns(p)).is_some();
        // only where the walk cannot fail for its verifier's budget: a walk
        // of stages that parse options or keep state may, and then runs one
        // program per stage, on fresh slots
        let keep = walks && runs == Runs::AnyWalk;
        let from = base.filter(|b| keep && b.walk && b.walk_slot != 0);
        let same = |c: &ChainState| -> Option<Vec<u16>> {
            let b = from?.chains.iter().find(|b| b.spec.name == c.spec.name)?;
            (b.spec == c.spec && b.slots.len() == chain::stage_count(&c.spec))
                .then(|| b.slots.clone())
        };
        let reuse: Vec<Option<Vec<u16>>> = p.chains.iter().map(same).collect();
        let fresh_n: usize = p
            .chains
            .iter()
            .zip(&reuse)
            .filter(|(_, r)| r.is_none())
            .map(|(c, _)| chain::stage_count(&c.spec))
            .sum();
        let mut fresh = self
            .alloc_slots(family, fresh_n + usize::from(walks))?
            .into_iter();
        let walk_slot = if walks { fresh.next() } else { None };
        let mut lay = Layout {
            slots: Vec::new(),
            walk_slot,
            kept: BTreeSet::new(),
        };
        for (c, r) in p.chains.iter().zip(reuse) {
            match r {
                Some(v) => {
                    lay.kept.extend(v.iter().copied());
                    lay.slots.extend(v);
                }
                None => lay
                    .slots
                    .extend(fresh.by_ref().take(chain::stage_count(&c.spec))),
            }
        }
        Ok(lay)
    }

    /// Records what the change is about to create: its slots and the
    /// points it attaches (with the pins their attachments will have).
    pub fn intend(
        &mut self,
        attach: Vec<AttachPoint>,
        tables: Vec<crate::tables::TableState>,
    ) -> Result<()> {
        let mut slots: Vec<Retired> = Vec::new();
        for fam in FAMILIES {
            let v: Vec<u16> = self
                .taken
                .iter()
                .filter(|(f, _)| *f == fam)
                .map(|(_, s)| *s)
                .collect();
            if !v.is_empty() {
                slots.push(Retired {
                    family: fam.to_owned(),
                    slots: v,
                    at_ms: now_ms(),
                });
            }
        }
        self.pending = Pending {
            slots,
            attach,
            tables,
        };
        let mut doc = self.base.clone();
        doc.pending = Some(self.pending.clone());
        self.sd.save(&doc)
    }

    /// Writes a planned layout into slots this change was given.
    /// Returns whether the layout runs as one walk program.
    pub fn write(&mut self, family: &str, plan: &[PlannedChain], lay: &Layout) -> Result<bool> {
        store::write_slots(
            self.sd,
            family,
            plan,
            lay,
            &mut self.objs,
            store::walk_allowed(),
        )
    }

    /// Takes everything back; the committed state stays as it was.
    pub fn abort(mut self) -> Result<()> {
        self.base.pending = Some(std::mem::take(&mut self.pending));
        rollback(self.sd, &mut self.base);
        store::drop_new_global_pins(&self.sd.dir, &self.globals_before);
        self.sd.save(&self.base)
    }

    /// Makes `next` the committed state: `retire` are the slots of the old
    /// layouts the change replaced, `removed` the points it took away
    /// (their heads already emptied), detached right after.
    pub fn commit(
        self,
        mut next: State,
        retire: Vec<Retired>,
        removed: Vec<AttachPoint>,
    ) -> Result<Vec<String>> {
        next.pending = None;
        next.retired.extend(retire);
        let had_cleanup = !removed.is_empty() || !next.cleanup.is_empty();
        next.cleanup.extend(removed);
        self.sd.save(&next)?;
        if !had_cleanup {
            return Ok(Vec::new());
        }
        let notes = cleanup(self.sd, &mut next);
        self.sd.save(&next)?;
        Ok(notes)
    }

    /// A free attach-table index of `family`, not one of `taken`.
    pub fn alloc_attach_id(&self, next: &State, family: &str) -> Result<u32> {
        let used: BTreeSet<u32> = next
            .points
            .iter()
            .chain(&self.base.points)
            .chain(&self.base.cleanup)
            .filter(|p| p.hook.family() == family)
            .map(|p| p.id)
            .collect();
        (1..crate::abi::MAX_ATTACH)
            .find(|i| !used.contains(i))
            .ok_or_else(|| {
                anyhow!(
                    "no free attach point left for {family} ({} in all)",
                    crate::abi::MAX_ATTACH - 1
                )
            })
    }
}
