//! What emptcp has applied, kept under its state directory (statedir.rs)
//! so that it lives exactly as long as the pins: a JSON document in the
//! pinned one-entry array map `state`.
//!
//! The document is also the journal of a change: `pending` records what a
//! command is about to create in the kernel before it creates it, so that
//! whatever kills the command, the next one can take it back
//! (`txn.rs`); `cleanup` records what a committed change still has to
//! remove. Saving the document is one map update: atomic.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use serde::{Deserialize, Serialize};

pub use crate::runtime::statedir::STATE_VALUE_SIZE;
pub use crate::runtime::statedir::{StateDir, DEFAULT_DIR};

use crate::kernel::attach::{Attachment, XdpMode};
use crate::policy::model::{Chain, Hook};
use crate::tables::TableState;

/// 2: a prefix table is a trie per family; the stages of a state of 1
/// look IPv4 prefixes up in the IPv6 trie.
/// 3: a slot table sits in the outer map of its size; the stages of a
/// state of 2 look it up in one outer map for every size.
/// 4: a prefix table has an IPv4 index; the stages of a state of 3 find
/// none and miss every IPv4 prefix.
const STATE_VERSION: u32 = 4;

/// One chain as applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainState {
    pub id: u16,
    pub spec: Chain,
    /// Slot of each stage (selectors, then actors).
    pub slots: Vec<u16>,
    pub kinds: Vec<String>,
}

/// A device x hook with an entry program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachPoint {
    pub id: u32,
    pub netns: Option<String>,
    pub netns_ino: u64,
    /// The namespace's cookie (SO_NETNS_COOKIE, Linux >= 5.14): names a
    /// namespace for its whole life, unlike an inode number.
    #[serde(default)]
    pub netns_cookie: Option<u64>,
    pub dev: String,
    pub ifindex: u32,
    pub hook: Hook,
    pub xdp_mode: XdpMode,
    pub attachment: Attachment,
    pub gen: u32,
    /// The chains run as one walk program (in the first slot of the
    /// layout), not one program per stage.
    #[serde(default)]
    pub walk: bool,
    /// The slot holding the walk program (0: the first stage's slot, as
    /// documents before this field). Its own slot, so that a change can
    /// keep the counter slots of the chains it leaves alone.
    #[serde(default)]
    pub walk_slot: u16,
    /// The device's hook runs the walk program itself (it parses the
    /// packet). False in documents written before walks did: their walk
    /// programs read the context the entry left in skb->cb, so the entry
    /// stays on the hook until a change lays the point out again.
    #[serde(default)]
    pub hook_walk: bool,
    /// In run order.
    pub chains: Vec<ChainState>,
}

/// Slots left by a swap, freed once no packet can still be walking them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retired {
    pub family: String,
    pub slots: Vec<u16>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub version: u32,
    pub next_chain_id: u16,
    pub points: Vec<AttachPoint>,
    pub retired: Vec<Retired>,
    /// A change under way: what it may have created in the kernel.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// Attach points a committed change removed whose entry programs and
    /// links may still be there.
    #[serde(default)]
    pub cleanup: Vec<AttachPoint>,
    /// Named sets and maps (tables.rs).
    #[serde(default)]
    pub tables: Vec<TableState>,
}

/// What a change creates before it commits, recorded before it creates it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Pending {
    /// Stage slots being written (reachable only after a switch).
    pub slots: Vec<Retired>,
    /// Attach points being attached: new ones, and drifted ones being
    /// attached again (their entry and link pins).
    pub attach: Vec<AttachPoint>,
    /// New tables being put into their outer slots.
    #[serde(default)]
    pub tables: Vec<TableState>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AttachPoint {
    /// The slot its layout starts at (0: nothing to run).
    pub fn first_slot(&self) -> u16 {
        if self.walk && self.walk_slot != 0 {
            return self.walk_slot;
        }
        self.chains
            .first()
            .and_then(|c| c.slots.first())
            .copied()
            .unwrap_or(0)
    }

    /// Every slot the point's layout holds: its stages' and its walk's.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        let walk = (self.walk && self.walk_slot != 0).then_some(self.walk_slot);
        walk.into_iter()
            .chain(self.chains.iter().flat_map(|c| c.slots.iter().copied()))
    }
}

impl State {
    /// Slots of a family in use by chains or waiting to be freed.
    pub fn used_slots(&self, family: &str) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .points
            .iter()
            .filter(|p| p.hook.family() == family)
            .flat_map(|p| p.slots())
            .chain(
                self.retired
                    .iter()
                    .filter(|r| r.family == family)
                    .flat_map(|r| r.slots.iter().copied()),
            )
            .collect();
        v.sort_unstable();
        v
    }

    /// Refuses a document larger than the state map holds. Checked on the
    /// planned document before anything is created.
    pub fn check_fits(&self) -> Result<()> {
        let n = serde_json::to_vec(self)?.len();
        if n + 4 > STATE_VALUE_SIZE as usize {
            bail!(
                "too many chains: the state would take {n} bytes, more than the {} bytes of the state map",
                STATE_VALUE_SIZE
            );
        }
        Ok(())
    }

    /// Finds the chain called `name`: (attach point index, chain index).
    pub fn find_chain(&self, name: &str) -> Option<(usize, usize)> {
        self.points.iter().enumerate().find_map(|(pi, p)| {
            p.chains
                .iter()
                .position(|c| c.spec.name == name)
                .map(|ci| (pi, ci))
        })
    }

    pub fn alloc_chain_id(&mut self) -> u16 {
        self.next_chain_id = self.next_chain_id.wrapping_add(1).max(1);
        self.next_chain_id
    }
}

impl StateDir {
    pub fn load(&self) -> Result<State> {
        let s = self.load_any()?;
        if s.version != STATE_VERSION {
            bail!(
                "state written by another emptcp version ({}); `emptcp detach --all` first",
                s.version
            );
        }
        Ok(s)
    }

    /// The state whatever version wrote it, for `detach --all`: the
    /// points and chains it names are to be removed, not run.
    pub fn load_any(&self) -> Result<State> {
        let Some(m) = self.state_map(false)? else {
            return Ok(State {
                version: STATE_VERSION,
                ..Default::default()
            });
        };
        let v = m
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("state map is empty")?;
        let len = u32::from_ne_bytes(v[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Ok(State {
                version: STATE_VERSION,
                ..Default::default()
            });
        }
        if len > v.len() - 4 {
            bail!("state map is corrupt (length {len}); remove it with `emptcp detach --all`");
        }
        serde_json::from_slice(&v[4..4 + len]).context("state map does not parse")
    }

    pub fn save(&self, s: &State) -> Result<()> {
        let m = self.state_map(true)?.expect("created");
        let json = serde_json::to_vec(s)?;
        s.check_fits()?;
        let mut v = vec![0u8; STATE_VALUE_SIZE as usize];
        v[..4].copy_from_slice(&(json.len() as u32).to_ne_bytes());
        v[4..4 + json.len()].copy_from_slice(&json);
        m.update(&0u32.to_ne_bytes(), &v, MapFlags::ANY)
            .context("failed to write the state map")?;
        Ok(())
    }
}
