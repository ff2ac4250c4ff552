//! Running chains on packets without attaching them: the chain is built in
//! a private bpffs directory exactly as `apply` builds it, and packets go
//! through the program its hook would run (the walk, or the entry where
//! the chains run by tail calls) with BPF_PROG_TEST_RUN. Used by the packet
//! tests and the cost benchmarks. Named sets and maps are created and put
//! into the outer maps of that directory with the functions apply uses;
//! their elements can change between runs, as `emptcp set add` does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, Object, ProgramInput};

use crate::abi::COUNTER_NAMES;
use crate::policy::model::{Chain, Hook};
use crate::runtime::chain;
use crate::runtime::state::StateDir;
use crate::runtime::walkcount;
use crate::runtime::{load_entry, pinned_map, set_attach, slot_counters, write_slots, Objects};
use crate::tables::{self, TableDef, TableState};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A chain list loaded for test runs; its pins go away on drop.
pub struct Harness {
    dir: PathBuf,
    sd: Option<StateDir>,
    family: &'static str,
    entry: Object,
    _objs: Objects,
    /// The tables the chains may name, with their ids.
    tables: Vec<TableState>,
    /// Slots of each chain's stages.
    pub slots: Vec<Vec<u16>>,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunOut {
    pub ret: i32,
    pub data: Vec<u8>,
}

impl Harness {
    /// Builds `chains` (all for `hook`'s family) in a fresh private
    /// directory under /sys/fs/bpf.
    pub fn new(hook: Hook, chains: &[Chain]) -> Result<Harness> {
        Self::with_tables(hook, chains, &[])
    }

    /// Like `new`, with one program per stage linked by tail calls
    /// (`walk` false) instead of one walk program: the runtime of points
    /// with third-party stages, for tests and A/B measurements.
    pub fn with_runtime(hook: Hook, chains: &[Chain], walk: bool) -> Result<Harness> {
        Self::build_in(hook, chains, &[], walk)
    }

    /// Like `new`, with named sets and maps the chains may name: each
    /// table is built with its elements (text form, `KEY` or `KEY=VALUE`)
    /// and installed before any stage is loaded, as apply does. Ids are
    /// given per key layout from 1, in the order of `tables`.
    pub fn with_tables(
        hook: Hook,
        chains: &[Chain],
        tables: &[(TableDef, Vec<String>)],
    ) -> Result<Harness> {
        Self::build_in(hook, chains, tables, true)
    }

    /// A fresh private directory, removed again when the build fails.
    fn build_in(
        hook: Hook,
        chains: &[Chain],
        tables: &[(TableDef, Vec<String>)],
        walk: bool,
    ) -> Result<Harness> {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/emptcp-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let built = Self::build(&dir, hook, chains, tables, walk);
        if built.is_err() {
            if let Ok(Some(sd)) = StateDir::open(&dir, false) {
                let _ = sd.remove_ours();
            }
        }
        built
    }

    fn build(
        dir: &std::path::Path,
        hook: Hook,
        chains: &[Chain],
        defs: &[(TableDef, Vec<String>)],
        walk: bool,
    ) -> Result<Harness> {
        let dir = dir.to_path_buf();
        let sd = StateDir::open(&dir, true)?.context("state dir")?;
        let family = hook.family();
        let mut objs = Objects::default();
        // the outer maps first, so that every stage object reuses them
        for part in tables::Part::FIXED {
            tables::outer(&sd, part)?;
        }
        let mut states: Vec<TableState> = Vec::new();
        for (def, elements) in defs {
            if states.iter().any(|t| t.def.name == def.name) {
                anyhow::bail!("set or map {:?} given twice", def.name);
            }
            let id = 1 + states
                .iter()
                .filter(|t| t.def.key.layout() == def.key.layout())
                .count();
            let id = u8::try_from(id)
                .ok()
                .filter(|i| u32::from(*i) < tables::MAX_TABLES)
                .context("too many tables of one key layout")?;
            let mut elems = Vec::with_capacity(elements.len());
            for e in elements {
                elems.push(tables::parse_element(def, e).map_err(anyhow::Error::msg)?);
            }
            let t = TableState {
                def: def.clone(),
                id,
            };
            let m = tables::build(def, &elems)?;
            tables::install(&sd, &t, &m)?;
            states.push(t);
        }
        let ids: Vec<(&Chain, u16)> = chains.iter().zip(1u16..).collect();
        let n: usize = chains.iter().map(chain::stage_count).sum();
        let slots: Vec<u16> = (1..=n as u16).collect();
        let env = chain::Env {
            ifindex: &|d| crate::kernel::netns::ifindex(d, None),
            table: &|name| {
                states
                    .iter()
                    .find(|t| t.def.name == name)
                    .cloned()
                    .with_context(|| format!("set or map {name:?}: not in this harness"))
            },
        };
        let plan = chain::plan_with(&ids, &slots, &env)?;
        let entry = load_entry(&sd, family, 1, "entry")?;
        // the walk program (if any) in the first stage's slot, as before
        // walks had a slot of their own
        let lay = crate::runtime::txn::Layout {
            slots: slots.clone(),
            walk_slot: None,
            kept: Default::default(),
        };
        write_slots(&sd, family, &plan, &lay, &mut objs, walk)?;
        set_attach(&sd, family, 1, slots.first().copied().unwrap_or(0), 1)?;
        Ok(Harness {
            dir,
            sd: Some(sd),
            family,
            entry,
            _objs: objs,
            tables: states,
            slots: plan
                .iter()
                .map(|c| c.stages.iter().map(|s| s.slot).collect())
                .collect(),
        })
    }

    /// The private bpffs directory the chain lives in (its state dir: the
    /// CLI can read its shared maps, e.g. `emptcp --state-dir DIR events`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn table(&self, name: &str) -> Result<(&StateDir, &TableState)> {
        let sd = self.sd.as_ref().context("no state dir")?;
        let t = self
            .tables
            .iter()
            .find(|t| t.def.name == name)
            .with_context(|| format!("set or map {name:?}: not in this harness"))?;
        Ok((sd, t))
    }

    /// Adds elements (text form) to a table in place, as `emptcp set add`
    /// does: the next run sees them, nothing is reloaded.
    pub fn table_add(&self, name: &str, elements: &[&str]) -> Result<()> {
        let (sd, t) = self.table(name)?;
        let mut elems = Vec::with_capacity(elements.len());
        for e in elements {
            elems.push(tables::parse_element(&t.def, e).map_err(anyhow::Error::msg)?);
        }
        tables::add(sd, t, &elems)
    }

    /// Deletes elements (keys in text form) from a table in place.
    pub fn table_del(&self, name: &str, keys: &[&str]) -> Result<()> {
        let (sd, t) = self.table(name)?;
        let mut ks = Vec::with_capacity(keys.len());
        for k in keys {
            ks.push(tables::parse_key(t.def.key, k).map_err(anyhow::Error::msg)?);
        }
        tables::del(sd, t, &ks)
    }

    /// A table's elements (key bytes, value), in key order.
    pub fn table_elements(&self, name: &str) -> Result<Vec<(Vec<u8>, u64)>> {
        let (sd, t) = self.table(name)?;
        tables::open(sd, t)?.elements()
    }

    /// A prefix table's IPv4 index head (abi.h struct emptcp_tab_pfx_head
    /// `lens`): the lengths a lookup probes, longest first, each + 1 in a
    /// byte, or EMPTCP_TAB_PFX_TRIE in the first.
    pub fn table_prefix_lens(&self, name: &str) -> Result<u64> {
        let (sd, t) = self.table(name)?;
        match tables::open(sd, t)? {
            tables::Table::Tries(tr) => tr.index_lens(),
            tables::Table::Array(_) => anyhow::bail!("{name:?} is not a prefix table"),
        }
    }

    /// The id of the map in a table's outer slot (a rebuild swaps in a
    /// new one).
    pub fn table_map_id(&self, name: &str) -> Result<u32> {
        let (sd, t) = self.table(name)?;
        tables::map_id(sd, t, tables::Part::of(&t.def)[0])
    }

    /// Empties a table by swapping in an empty one, as `emptcp set flush`.
    pub fn table_flush(&self, name: &str) -> Result<()> {
        let (sd, t) = self.table(name)?;
        tables::install(sd, t, &tables::build(&t.def, &[])?)
    }

    /// The name of the walk program the chains run in (store::Walk), or
    /// None when they run by tail calls.
    pub fn walk_prog(&self) -> Option<&'static str> {
        crate::runtime::store::Walk::ALL
            .map(|w| w.prog())
            .into_iter()
            .find(|n| self._objs.with_prog(n).is_some())
    }

    /// The program the attach point's hook would run: the walk program
    /// when the chains walk, else the entry program (store::hook_prog).
    fn hook_prog(&self) -> Result<libbpf_rs::ProgramMut<'_>> {
        for name in crate::runtime::store::Walk::ALL.map(|w| w.prog()) {
            if let Some(o) = self._objs.with_prog(name) {
                return o
                    .progs_mut()
                    .find(|p| p.name() == name)
                    .context("walk program");
            }
        }
        self.entry
            .progs_mut()
            .find(|p| p.name() == "emptcp_entry")
            .context("no entry program")
    }

    /// Runs one packet through the program the hook would run.
    pub fn run(&self, pkt: &[u8]) -> Result<RunOut> {
        let prog = self.hook_prog()?;
        let mut out = vec![0u8; pkt.len() + 256];
        let input = ProgramInput {
            data_in: Some(pkt),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        let o = prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
        let n = o.data.as_ref().map(|d| d.len()).unwrap_or(0);
        let data = o.data.map(|d| d[..n].to_vec()).unwrap_or_default();
        Ok(RunOut {
            ret: o.return_value as i32,
            data,
        })
    }

    /// TC only: runs one packet with `skb->mark = mark`; returns the
    /// result and the mark the chain left.
    pub fn run_mark(&self, pkt: &[u8], mark: u32) -> Result<(RunOut, u32)> {
        // struct __sk_buff: 192 bytes, mark at offset 8; the other fields
        // test_run accepts stay zero
        const SKB_LEN: usize = 192;
        let prog = self.hook_prog()?;
        let mut out = vec![0u8; pkt.len() + 256];
        let mut ctx_in = [0u8; SKB_LEN];
        ctx_in[8..12].copy_from_slice(&mark.to_ne_bytes());
        let mut ctx_out = [0u8; SKB_LEN];
        let input = ProgramInput {
            data_in: Some(pkt),
            data_out: Some(&mut out),
            context_in: Some(&mut ctx_in),
            context_out: Some(&mut ctx_out),
            repeat: 1,
            ..Default::default()
        };
        let o = prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
        let data = o.data.map(|d| d.to_vec()).unwrap_or_default();
        let ret = o.return_value as i32;
        let mark = u32::from_ne_bytes(ctx_out[8..12].try_into().expect("4 bytes"));
        Ok((RunOut { ret, data }, mark))
    }

    /// Average time per run over `repeat` runs (kernel-measured).
    pub fn time(&self, pkt: &[u8], repeat: u32) -> Result<Duration> {
        let prog = self.hook_prog()?;
        let input = ProgramInput {
            data_in: Some(pkt),
            repeat,
            ..Default::default()
        };
        Ok(prog.test_run(input).context("BPF_PROG_TEST_RUN")?.duration)
    }

    /// A counter of stage `stage` of chain `chain` ("run", "hit", ...);
    /// chain None = the entry's own counters.
    pub fn counter(&self, chain: Option<(usize, usize)>, name: &str) -> u64 {
        let slot = chain.map(|(c, s)| self.slots[c][s] as u32).unwrap_or(0);
        let r = COUNTER_NAMES
            .iter()
            .position(|c| *c == name)
            .expect("counter name");
        let Some(sd) = &self.sd else { return 0 };
        let Ok(m) = pinned_map(sd, self.family, "emptcp_stats") else {
            return 0;
        };
        let mut c = slot_counters(&m, slot);
        // a walk counts runs and hits in its own block (walkcount.rs)
        if let Some(b) = self.walk_block() {
            match chain {
                Some((ci, si)) => {
                    let at = self.slots[..ci].iter().map(Vec::len).sum::<usize>() + si;
                    b.add_to(at, &mut c);
                }
                None => c[crate::abi::CNT_RUN as usize] += b.seen(),
            }
        }
        c[r]
    }

    /// The counter block of the walk program, when the chains walk.
    fn walk_block(&self) -> Option<walkcount::Block> {
        for name in crate::runtime::store::Walk::ALL.map(|w| w.prog()) {
            if let Some(o) = self._objs.with_prog(name) {
                let m = o.maps().find(|m| m.name() == walkcount::MAP)?;
                let h = libbpf_rs::MapHandle::try_from(&m).ok()?;
                return walkcount::Block::read(&h).ok();
            }
        }
        None
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(sd) = self.sd.take() {
            let _ = sd.remove_ours();
        }
    }
}
