//! A walk program's counter block (walk.bpf.c `walk_counts`): the packets
//! the walk saw and, per position, the walks that ended there and its hits,
//! in one per-CPU element of a map of the walk program's own. A packet
//! counts where its walk ended, and a position its hits, with one add at a
//! constant offset each, instead of a lookup of the slot's `emptcp_stats`
//! element per position; a position's run is the walks that ended at it or
//! later. The rare reasons stay in the slots.
//!
//! So a stage's run and hit are its slot's counters plus its position's
//! pair in the block of the walk that runs it (`Block::add_to`), and the
//! entry's run is slot 0's plus every walk's `seen`. When a walk is
//! replaced, its block is added into the slots the new layout keeps and
//! into slot 0 (`fold`), so that counters go on across replacements; the
//! packets an old walk counts between that read and its last run are lost.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::abi::{CNT_HIT, CNT_MAX, CNT_RUN};
use crate::runtime::state::{AttachPoint, StateDir};
use crate::runtime::store::{pinned_map, slot_prog, u32_key};

/// The map's name in walk.bpf.c (no `emptcp_` prefix: not shared).
pub const MAP: &str = "walk_counts";

/// Words before the positions: `seen` and a pad word.
const HEAD_WORDS: usize = 2;

/// Words after the positions: the walk's scratch (walk.bpf.c
/// walk_scratch(): the inline lookups' key and value, or the loop walk's
/// copy of the packet's addresses; not counters).
const TAB_WORDS: usize = 6;

/// The block's size for a walk of `n` positions: its head, per position
/// the walks that ended there and its hits, and the scratch.
pub fn value_size(n: usize) -> u32 {
    (8 * (HEAD_WORDS + 2 * n + TAB_WORDS)) as u32
}

/// One walk's block on each CPU: words in walk.bpf.c's layout.
#[derive(Debug, Default, Clone)]
pub struct Block {
    cpus: Vec<Vec<u64>>,
}

impl Block {
    /// Reads the block of `m` (a `walk_counts` map).
    pub fn read(m: &MapHandle) -> Result<Block> {
        let vals = m
            .lookup_percpu(&u32_key(0), MapFlags::ANY)?
            .context("walk counter block has no element")?;
        Ok(Block {
            cpus: vals.iter().map(|v| words(v)).collect(),
        })
    }

    /// Packets the walk saw, over all CPUs.
    pub fn seen(&self) -> u64 {
        self.cpus
            .iter()
            .map(|c| c.first().copied().unwrap_or(0))
            .sum()
    }

    /// Run and hit of position `i` on one CPU's words. The block holds,
    /// per position, the walks that ended there and the hits: a position
    /// ran for every walk that ended at it or after it.
    fn pos(words: &[u64], i: usize) -> [u64; 2] {
        let at = HEAD_WORDS + 2 * i;
        let end = words.len().saturating_sub(TAB_WORDS);
        let ours = words.get(at..end).unwrap_or(&[]);
        [
            ours.iter().step_by(2).sum(),
            ours.get(1).copied().unwrap_or(0),
        ]
    }

    /// Adds position `i`'s run and hit, over all CPUs, into `c` (a slot's
    /// counters, abi.h order).
    pub fn add_to(&self, i: usize, c: &mut [u64; CNT_MAX as usize]) {
        for w in &self.cpus {
            let [run, hit] = Self::pos(w, i);
            c[CNT_RUN as usize] += run;
            c[CNT_HIT as usize] += hit;
        }
    }
}

/// The `walk_counts` map of the walk program in `slot` of `family`.
pub fn map_of_slot(sd: &StateDir, family: &str, slot: u16) -> Result<MapHandle> {
    let progs = pinned_map(sd, family, "emptcp_progs")?;
    let prog = slot_prog(&progs, slot as u32)?;
    map_of_prog(prog.as_fd().as_raw_fd())
}

/// The `walk_counts` map among the maps program `fd` uses.
pub fn map_of_prog(fd: i32) -> Result<MapHandle> {
    let mut ids = [0u32; 64];
    let mut info = libbpf_sys::bpf_prog_info {
        nr_map_ids: ids.len() as u32,
        map_ids: ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a valid bpf_prog_info of `len` bytes; map_ids points
    // at `nr_map_ids` u32s that outlive the call.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd,
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        bail!("failed to read program info: errno {}", -ret);
    }
    let n = (info.nr_map_ids as usize).min(ids.len());
    for id in &ids[..n] {
        let Ok(m) = MapHandle::from_map_id(*id) else {
            continue;
        };
        if m.name().to_str() == Some(MAP) {
            return Ok(m);
        }
    }
    bail!("the walk program has no {MAP} map")
}

/// The block of point `p`'s walk (None: its chains do not walk, or the
/// walk program is not in its slot).
pub fn of_point(sd: &StateDir, p: &AttachPoint) -> Option<Block> {
    if !p.walk {
        return None;
    }
    let m = map_of_slot(sd, p.hook.family(), p.first_slot()).ok()?;
    Block::read(&m).ok()
}

/// The slot of each position of point `p`'s walk, in walk order (its
/// chains in run order, each chain's stages in order: as it was planned).
pub fn positions(p: &AttachPoint) -> impl Iterator<Item = u16> + '_ {
    p.chains.iter().flat_map(|c| c.slots.iter().copied())
}

/// Adds the block of `old`'s walk (still in its slot: retired slots are
/// emptied only after their grace period) into the `emptcp_stats`
/// elements of the slots `keep` keeps, and its `seen` into slot 0, CPU by
/// CPU. Nothing when `old` did not walk.
pub fn fold(sd: &StateDir, old: &AttachPoint, keep: impl Fn(u16) -> bool) -> Result<()> {
    let Some(b) = of_point(sd, old) else {
        return Ok(());
    };
    let stats = pinned_map(sd, old.hook.family(), "emptcp_stats")?;
    let seen: Vec<[u64; 2]> = b
        .cpus
        .iter()
        .map(|w| [w.first().copied().unwrap_or(0), 0])
        .collect();
    add_percpu(&stats, 0, &seen)?;
    for (i, slot) in positions(old).enumerate() {
        if keep(slot) {
            let counts: Vec<[u64; 2]> = b.cpus.iter().map(|w| Block::pos(w, i)).collect();
            add_percpu(&stats, slot, &counts)?;
        }
    }
    Ok(())
}

/// Adds a run and a hit per CPU (`add`, in CPU order) to `slot`'s
/// `emptcp_stats` element.
fn add_percpu(stats: &MapHandle, slot: u16, add: &[[u64; 2]]) -> Result<()> {
    let key = u32_key(slot as u32);
    let Some(mut vals) = stats.lookup_percpu(&key, MapFlags::ANY)? else {
        return Ok(());
    };
    for (v, [run, hit]) in vals.iter_mut().zip(add) {
        let mut c = words(v);
        c[CNT_RUN as usize] += run;
        c[CNT_HIT as usize] += hit;
        *v = c.iter().flat_map(|x| x.to_ne_bytes()).collect();
    }
    stats.update_percpu(&key, &vals, MapFlags::ANY)?;
    Ok(())
}

/// A per-CPU value's bytes as native 8-byte words.
fn words(v: &[u8]) -> Vec<u64> {
    v.chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// The counters of one attach point's stages: their slots' elements plus,
/// when the point walks, their positions in its walk's block.
pub struct PointCounters {
    stats: Option<MapHandle>,
    block: Option<Block>,
    at: std::collections::BTreeMap<u16, usize>,
}

impl PointCounters {
    pub fn of(sd: &StateDir, p: &AttachPoint) -> PointCounters {
        PointCounters {
            stats: pinned_map(sd, p.hook.family(), "emptcp_stats").ok(),
            block: of_point(sd, p),
            at: positions(p).enumerate().map(|(i, s)| (s, i)).collect(),
        }
    }

    /// All counters of `slot` (abi.h order); None: the family's counters
    /// cannot be read.
    pub fn slot(&self, slot: u16) -> Option<[u64; CNT_MAX as usize]> {
        let m = self.stats.as_ref()?;
        let mut c = crate::runtime::store::slot_counters(m, slot as u32);
        if let (Some(b), Some(i)) = (&self.block, self.at.get(&slot)) {
            b.add_to(*i, &mut c);
        }
        Some(c)
    }
}
