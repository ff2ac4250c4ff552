//! The array tables the BPF side probes itself (abi.h "Tables",
//! include/emptcp/tables.h): addr, pair and subflow keys in an
//! open-addressing table of 2^bits slots, ports in an array indexed by the
//! port. Both are mmapable BPF arrays: emptcp writes them through the
//! mapping with single aligned 8-byte stores, so that a packet sees each
//! element whole or not at all and a value old or new:
//! - a new element goes into a slot never used since the table was built
//!   (EMPTY): key words and value first, then the tag VALID (release);
//! - a value changes in place (one store);
//! - a delete stores the tag GONE; the key words stay, so that a reader
//!   that read VALID just before compares the same key. A GONE slot takes
//!   only its own key back; other keys go to EMPTY slots, and when the
//!   probe of one finds none, the table is rebuilt whole and swapped in.
//!
//! One slot past the 2^bits that probes reach holds the counts of VALID and
//! GONE slots, so that `add` and `show` read two words instead of walking
//! the table (in slot 0, it cost the keys that hash to 0 a second probe).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapHandle, MapType};

use super::KeyType;
use crate::abi;

/// Slots a lookup probes at most (abi.h EMPTCP_TAB_PROBES).
pub const PROBES: usize = abi::TAB_PROBES as usize;
/// A port table's values (abi.h EMPTCP_TAB_PORTS).
pub const PORTS: u32 = abi::TAB_PORTS;
/// A port value's presence bit (abi.h EMPTCP_TAB_PORT_SET).
pub const PORT_SET: u64 = 1 << abi::TAB_PORT_SET_BIT;

const EMPTY: u64 = abi::TAB_EMPTY as u64;
const VALID: u64 = abi::TAB_VALID as u64;
const GONE: u64 = abi::TAB_GONE as u64;

const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The key's 8-byte words in a slot table (None: not a slot table). A
/// prefix table's slot table is its IPv4 index (index.rs): (length,
/// masked address).
pub fn key_words(kt: KeyType) -> Option<usize> {
    match kt {
        KeyType::Addr | KeyType::Prefix => Some(2),
        KeyType::Pair => Some(4),
        KeyType::Subflow => Some(5),
        KeyType::Port => None,
    }
}

/// Slots after the header: a prefix index's count per length (abi.h
/// EMPTCP_TAB_PFX_AUX), none for the others.
fn aux_slots(kt: KeyType) -> u32 {
    match kt {
        KeyType::Prefix => abi::TAB_PFX_AUX,
        _ => 0,
    }
}

/// log2 of the slots of a slot table for `size` elements: at least four
/// times as many slots as elements. Linear probing's longest probe grows
/// fast with the load: 131,072 random keys need up to 30-35 slots at a
/// load of 1/2, 11-13 at 1/4 (measured with a model of this table), and a
/// probe stops at PROBES.
pub fn slot_bits(size: u32) -> u32 {
    let want = (u64::from(size.max(1)) * 4).next_power_of_two();
    want.trailing_zeros().max(abi::TAB_MIN_BITS)
}

/// The slot a key hashes to: tables.h emptcp_tab_hash().
pub fn slot_of(w: &[u64], bits: u32) -> usize {
    const K: [u64; 5] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0xd6e8_feb8_6659_fd93,
        0xff51_afd7_ed55_8ccd,
    ];
    let mut h = w.iter().zip(K).fold(0u64, |h, (x, k)| {
        let p = x.rotate_left(32).wrapping_mul(k);
        h ^ p ^ (p >> 32)
    });
    h = h.wrapping_mul(K[0]);
    (h >> (64 - bits)) as usize
}

/// A key's bytes as the words the BPF side compares (native order, the
/// last word padded with zeros).
fn words_of(k: &[u8], n: usize) -> Vec<u64> {
    let mut b = k.to_vec();
    b.resize(n * 8, 0);
    b.chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// The array map for a table of `kt` (not prefix) for `size` elements.
pub fn create(kt: KeyType, size: u32, name: &str) -> Result<MapHandle> {
    create_bits(kt, slot_bits(size), name)
}

/// The array map for a slot table of `kt` of 2^`bits` slots (a port
/// table: `bits` unused). Every table of one size has the same length,
/// so that the outer map of that size (tables.h) needs no
/// BPF_F_INNER_MAP and the verifier inlines the slot's lookup.
pub fn create_bits(kt: KeyType, bits: u32, name: &str) -> Result<MapHandle> {
    let (value, entries) = match key_words(kt) {
        Some(w) => (8 * (w as u32 + 2), (1u32 << bits) + 1 + aux_slots(kt)),
        None => (8, PORTS),
    };
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: BPF_F_MMAPABLE,
        ..Default::default()
    };
    MapHandle::create(
        MapType::Array,
        Some(format!("emptcp_t_{}", &name[..name.len().min(6)])),
        4,
        value,
        entries,
        &opts,
    )
    .with_context(|| {
        format!(
            "failed to create the table of {}",
            crate::cli::text::quoted(name)
        )
    })
}

/// A table's array, mapped on demand in windows of WINDOW bytes: mapping
/// a whole array costs the kernel one page-table entry per page up front
/// (remap_vmalloc_range), ~2 ms for the 32 MiB of a set of size 200,000,
/// while adding an element touches two or three pages.
pub struct Mapped {
    fd: std::os::fd::OwnedFd,
    /// bytes of the array (page-rounded)
    len: usize,
    words: usize,
    windows: std::cell::RefCell<HashMap<usize, *mut libc::c_void>>,
    /// the whole array's mapping, once made (the fast path of word())
    all: std::cell::Cell<*mut libc::c_void>,
}

/// Bytes mapped at once (a multiple of the page size).
const WINDOW: usize = 64 * 1024;
/// The window that is the whole array.
const ALL: usize = usize::MAX;

impl Mapped {
    /// Array `m` (value size × entries bytes), nothing mapped yet.
    pub fn new(m: &MapHandle) -> Result<Mapped> {
        let bytes = m.value_size() as usize * m.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let fd = m
            .as_fd()
            .try_clone_to_owned()
            .context("failed to keep the table's descriptor")?;
        Ok(Mapped {
            fd,
            len: bytes.div_ceil(page) * page,
            words: bytes / 8,
            windows: Default::default(),
            all: std::cell::Cell::new(std::ptr::null_mut()),
        })
    }

    /// Maps the whole array at once, for work that touches much of it
    /// (a batch of keys about as many as the windows, a walk).
    fn map_all(&self) -> Result<()> {
        self.word_in(0, ALL)?;
        if let Some(p) = self.windows.borrow().get(&ALL) {
            self.all.set(*p);
        }
        Ok(())
    }

    /// Whether `keys` keys are better served by one mapping of it all.
    fn many(&self, keys: usize) -> bool {
        keys * 2 >= self.len / WINDOW
    }

    /// Word `i`, its window mapped when it is not yet (the one error: the
    /// kernel refused the mapping, e.g. out of memory).
    fn word(&self, i: usize) -> Result<&AtomicU64> {
        let all = self.all.get();
        if !all.is_null() {
            assert!(i < self.words, "word {i} past the table's {}", self.words);
            // SAFETY: `all` maps the whole array until drop (map_all);
            // word i lies within it, 8-aligned; every access is atomic (see
            // word_in).
            return Ok(unsafe { &*((all as *const u8).add(i * 8) as *const AtomicU64) });
        }
        self.word_in(i, (i * 8) / WINDOW)
    }

    /// Word `i` through window `w` (ALL: the whole array).
    fn word_in(&self, i: usize, w: usize) -> Result<&AtomicU64> {
        assert!(i < self.words, "word {i} past the table's {}", self.words);
        let (start, len) = match w {
            ALL => (0, self.len),
            w => (w * WINDOW, WINDOW.min(self.len - w * WINDOW)),
        };
        let off = i * 8;
        let mut windows = self.windows.borrow_mut();
        let base = match windows.get(&w) {
            Some(p) => *p,
            None => {
                // SAFETY: a shared mapping of part of an mmapable array
                // map's fd, page-aligned offset and length within the map's
                // page-rounded size (what the kernel allows); checked below.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        self.fd.as_raw_fd(),
                        start as libc::off_t,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Err(std::io::Error::last_os_error()).with_context(|| {
                        format!("failed to map the table's array ({len} bytes at {start})")
                    });
                }
                windows.insert(w, p);
                p
            }
        };
        // SAFETY: base maps the window holding byte `off` until drop; the
        // word is 8-aligned (windows and the array start page-aligned).
        // AtomicU64 has u64's size; the kernel and BPF programs access the
        // array concurrently, which is why every access is atomic.
        Ok(unsafe { &*((base as *const u8).add(off - start) as *const AtomicU64) })
    }

    fn load(&self, i: usize) -> Result<u64> {
        Ok(self.word(i)?.load(Ordering::Acquire))
    }

    fn store(&self, i: usize, v: u64) -> Result<()> {
        self.word(i)?.store(v, Ordering::Release);
        Ok(())
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        for (w, p) in self.windows.get_mut().drain() {
            let len = match w {
                ALL => self.len,
                w => WINDOW.min(self.len - w * WINDOW),
            };
            // SAFETY: p/len are a window mapped in word(), unmapped once.
            unsafe { libc::munmap(p, len) };
        }
    }
}

/// Why elements could not all be written in place.
pub enum Refused {
    /// More elements than the table's size: (elements now, new ones).
    Full(usize, usize),
    /// No free slot within PROBES of this key's slot (rebuild, then retry).
    NoSlot(Vec<u8>),
    /// The table's array could not be mapped: nothing was written.
    Map(anyhow::Error),
}

impl From<anyhow::Error> for Refused {
    fn from(e: anyhow::Error) -> Refused {
        Refused::Map(e)
    }
}

/// An open slot or port table.
pub struct ArrayTable {
    kt: KeyType,
    /// key words, None for a port table
    words: Option<usize>,
    /// log2 of the slots
    bits: u32,
    mm: Mapped,
}

impl ArrayTable {
    pub fn open(kt: KeyType, m: &MapHandle) -> Result<ArrayTable> {
        let mm = Mapped::new(m)?;
        let words = key_words(kt);
        let slots = match words {
            Some(w) => mm.words / (w + 2),
            None => mm.words,
        };
        Ok(ArrayTable {
            kt,
            words,
            // a slot table has 2^bits slots and its header after them
            bits: slots.max(1).ilog2(),
            mm,
        })
    }

    fn slots(&self) -> usize {
        1 << self.bits
    }

    /// Word index of slot `s` (its tag).
    fn at(&self, s: usize) -> usize {
        s * (self.words.unwrap_or(0) + 2)
    }

    fn port(k: &[u8]) -> usize {
        usize::from(u16::from_be_bytes([k[0], k[1]]))
    }

    /// Key `w` in slot `s`?
    fn same(&self, s: usize, w: &[u64]) -> Result<bool> {
        let a = self.at(s);
        for (i, x) in w.iter().enumerate() {
            if self.mm.load(a + 1 + i)? != *x {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Maps every word of slot `s` (a slot may straddle two windows), so
    /// that writing it cannot fail half-way.
    fn touch(&self, s: usize) -> Result<()> {
        let a = self.at(s);
        self.mm.load(a)?;
        self.mm.load(a + 1 + self.words.unwrap_or(0))?;
        Ok(())
    }

    /// The slot holding key `w`, VALID or GONE, and the first EMPTY slot
    /// of its probe (`taken`: slots planned for other keys).
    fn probe(&self, w: &[u64], taken: &HashSet<usize>) -> Result<(Option<usize>, Option<usize>)> {
        let mask = self.slots() - 1;
        let x = slot_of(w, self.bits);
        for j in 0..PROBES.min(self.slots()) {
            let s = (x + j) & mask;
            match self.mm.load(self.at(s))? {
                EMPTY if taken.contains(&s) => continue,
                EMPTY => return Ok((None, Some(s))),
                _ if self.same(s, w)? => return Ok((Some(s), None)),
                _ => continue,
            }
        }
        Ok((None, None))
    }

    /// Says that `keys` keys are about to be looked up or changed: maps
    /// the whole array when that is cheaper than window by window.
    pub fn will_touch(&self, keys: usize) -> Result<()> {
        if self.mm.many(keys) {
            self.mm.map_all()?;
        }
        Ok(())
    }

    /// The value of key `k`, when there.
    pub fn get(&self, k: &[u8]) -> Result<Option<u64>> {
        match self.words {
            None => {
                let v = self.mm.load(Self::port(k))?;
                Ok((v & PORT_SET != 0).then_some(v & !PORT_SET))
            }
            Some(n) => {
                let w = words_of(k, n);
                let (Some(s), _) = self.probe(&w, &HashSet::new())? else {
                    return Ok(None);
                };
                if self.mm.load(self.at(s))? != VALID {
                    return Ok(None);
                }
                Ok(Some(self.mm.load(self.at(s) + 1 + n)?))
            }
        }
    }

    /// Every element: (key bytes, value), in key order.
    pub fn elements(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        self.mm.map_all()?;
        let ks = self.kt.key_size() as usize;
        let mut out = Vec::new();
        match self.words {
            None => {
                for p in 1..PORTS as usize {
                    let v = self.mm.load(p)?;
                    if v & PORT_SET != 0 {
                        let mut k = (p as u16).to_be_bytes().to_vec();
                        k.extend_from_slice(&[0, 0]);
                        out.push((k, v & !PORT_SET));
                    }
                }
            }
            Some(n) => {
                for s in 0..self.slots() {
                    let a = self.at(s);
                    if self.mm.load(a)? != VALID {
                        continue;
                    }
                    let mut k = Vec::with_capacity(n * 8);
                    for i in 0..n {
                        k.extend_from_slice(&self.mm.load(a + 1 + i)?.to_ne_bytes());
                    }
                    k.truncate(ks);
                    out.push((k, self.mm.load(a + 1 + n)?));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Elements held.
    pub fn len(&self) -> Result<usize> {
        match self.words {
            None => {
                self.mm.map_all()?;
                let mut n = 0;
                for p in 1..PORTS as usize {
                    if self.mm.load(p)? & PORT_SET != 0 {
                        n += 1;
                    }
                }
                Ok(n)
            }
            Some(_) => Ok(self.mm.load(self.at(self.slots()) + 1)? as usize),
        }
    }

    /// Slots deleted since the table was built (a slot table's).
    fn gone(&self) -> Result<usize> {
        match self.words {
            None => Ok(0),
            Some(_) => Ok(self.mm.load(self.at(self.slots()) + 2)? as usize),
        }
    }

    /// Whether a quarter of the slots are deleted ones: then the table is
    /// built anew and swapped in, so that probes stay short.
    pub fn worn(&self) -> Result<bool> {
        Ok(self.gone()? > self.slots() / 4)
    }

    /// A fresh table's header: the slot after the 2^bits a probe reaches
    /// (GONE), its first two key words the counts of VALID and GONE slots,
    /// so that `show` and `add` need not walk the table.
    fn header(&self) -> Result<()> {
        let a = self.at(self.slots());
        self.touch(self.slots())?;
        if self.mm.load(a)? == EMPTY {
            self.mm.store(a + 1, 0)?;
            self.mm.store(a + 2, 0)?;
            self.mm.store(a, GONE)?;
        }
        Ok(())
    }

    /// Word `i` of the header's value and the slots after it (a prefix
    /// index's lengths and counts, index.rs), mapped by touch_aux().
    pub fn aux(&self, i: usize) -> Result<u64> {
        self.mm.load(self.at(self.slots()) + 3 + i)
    }

    pub fn set_aux(&self, i: usize, v: u64) -> Result<()> {
        self.mm.store(self.at(self.slots()) + 3 + i, v)
    }

    /// Maps the words aux() reaches (`n` of them), so that writing them
    /// cannot fail half-way.
    pub fn touch_aux(&self, n: usize) -> Result<()> {
        self.aux(0)?;
        self.aux(n - 1)?;
        Ok(())
    }

    /// Adds `d_valid` and `d_gone` to the header's counts (mapped by
    /// header() or len()).
    fn count(&self, d_valid: isize, d_gone: isize) -> Result<()> {
        let a = self.at(self.slots());
        let v = self.mm.load(a + 1)? as isize + d_valid;
        let g = self.mm.load(a + 2)? as isize + d_gone;
        self.mm.store(a + 1, v.max(0) as u64)?;
        self.mm.store(a + 2, g.max(0) as u64)?;
        Ok(())
    }

    /// Adds or changes elements, all or none: every key is placed (in
    /// the plan) before any is written. `size`: the most elements the
    /// table may hold.
    pub fn add(&self, elems: &[(Vec<u8>, u64)], size: usize) -> Result<(), Refused> {
        self.will_touch(elems.len())?;
        // the last value of a key given twice wins
        let mut uniq: Vec<(&[u8], u64)> = Vec::with_capacity(elems.len());
        let mut seen = HashMap::new();
        for (k, v) in elems {
            match seen.get(k.as_slice()) {
                Some(&i) => uniq[i] = (k.as_slice(), *v),
                None => {
                    seen.insert(k.as_slice(), uniq.len());
                    uniq.push((k.as_slice(), *v));
                }
            }
        }
        let Some(n) = self.words else {
            // get() maps each key's word: the stores below cannot fail
            let mut new = 0;
            for (k, _) in &uniq {
                if self.get(k)?.is_none() {
                    new += 1;
                }
            }
            let have = self.len()?;
            if have + new > size {
                return Err(Refused::Full(have, new));
            }
            for (k, v) in uniq {
                self.mm.store(Self::port(k), v | PORT_SET)?;
            }
            return Ok(());
        };
        self.header()?;
        // plan: (slot, key words, value, whether the slot is new)
        let mut plan: Vec<(usize, Vec<u64>, u64, bool)> = Vec::with_capacity(uniq.len());
        let mut taken: HashSet<usize> = HashSet::new();
        let (mut new, mut revived) = (0, 0);
        for (k, v) in &uniq {
            let w = words_of(k, n);
            match self.probe(&w, &taken)? {
                (Some(s), _) => {
                    self.touch(s)?;
                    if self.mm.load(self.at(s))? != VALID {
                        new += 1;
                        revived += 1;
                    }
                    plan.push((s, w, *v, false));
                }
                (None, Some(s)) => {
                    self.touch(s)?;
                    new += 1;
                    taken.insert(s);
                    plan.push((s, w, *v, true));
                }
                (None, None) => {
                    let have = self.len()?;
                    if have + new > size {
                        return Err(Refused::Full(have, new));
                    }
                    return Err(Refused::NoSlot(k.to_vec()));
                }
            }
        }
        let have = self.len()?;
        if have + new > size {
            return Err(Refused::Full(have, new));
        }
        // every slot of the plan and the header are mapped (touch,
        // header): the stores below cannot fail half-way
        for (s, w, v, fresh) in plan {
            let a = self.at(s);
            if fresh {
                for (i, x) in w.iter().enumerate() {
                    self.mm.store(a + 1 + i, *x)?;
                }
            }
            self.mm.store(a + 1 + n, v)?;
            // the tag last: a reader that sees VALID sees key and value
            self.mm.store(a, VALID)?;
        }
        self.count(new as isize, -(revived as isize))?;
        Ok(())
    }

    /// Deletes keys; the caller checked that each is there. The slots are
    /// found (and mapped) before any is changed: an error changes nothing.
    pub fn del(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.will_touch(keys.len())?;
        let Some(n) = self.words else {
            for k in keys {
                self.mm.load(Self::port(k))?;
            }
            for k in keys {
                self.mm.store(Self::port(k), 0)?;
            }
            return Ok(());
        };
        // the header, which count() writes
        self.touch(self.slots())?;
        let mut found = Vec::with_capacity(keys.len());
        for k in keys {
            if let (Some(s), _) = self.probe(&words_of(k, n), &HashSet::new())? {
                found.push(s);
            }
        }
        for s in found {
            if self.mm.load(self.at(s))? == VALID {
                self.mm.store(self.at(s), GONE)?;
                self.count(-1, 1)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::parse_key;

    /// The longest probe linear probing needs for `keys` at their table's
    /// load (what `add` refuses past PROBES).
    fn longest_probe(kt: KeyType, keys: &[Vec<u8>], size: u32) -> usize {
        let bits = slot_bits(size);
        let n = key_words(kt).expect("slot table");
        let mut used = vec![false; 1 << bits];
        let mut worst = 0;
        for k in keys {
            let x = slot_of(&words_of(k, n), bits);
            let mut j = 0;
            while used[(x + j) & ((1 << bits) - 1)] {
                j += 1;
            }
            used[(x + j) & ((1 << bits) - 1)] = true;
            worst = worst.max(j + 1);
        }
        worst
    }

    /// Keys of `kt` in patterns a hash can trip over: sequential IPv4
    /// and IPv6 addresses, pairs of neighbours (x . x+1), one address with
    /// many ports, the lookup bench's fillers (both families mixed).
    fn patterns(kt: KeyType, n: u32) -> Vec<(&'static str, Vec<String>)> {
        let v4 = |i: u32| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
        let v6 = |i: u32| format!("fd00:2::{:x}:{:x}", i >> 16, i & 0xffff);
        let v6hi = |i: u32| format!("fd00:{:x}:{:x}::1", i >> 16, i & 0xffff);
        let mix = |i: u32| if i % 2 == 1 { v6(i) } else { v4(i) };
        let all = |f: &dyn Fn(u32) -> String| (0..n).map(f).collect::<Vec<_>>();
        match kt {
            KeyType::Addr => vec![
                ("v4", all(&v4)),
                ("v6", all(&v6)),
                ("v6 prefixes", all(&v6hi)),
                ("mixed", all(&mix)),
            ],
            KeyType::Pair => vec![
                (
                    "v4 neighbours",
                    all(&|i| format!("{} . {}", v4(i), v4(i + 1))),
                ),
                (
                    "v6 neighbours",
                    all(&|i| format!("{} . {}", v6(i), v6(i + 1))),
                ),
                (
                    "mixed neighbours",
                    all(&|i| {
                        if i % 2 == 1 {
                            format!("{} . {}", v6(i), v6(i + 1))
                        } else {
                            format!("{} . {}", v4(i), v4(i + 1))
                        }
                    }),
                ),
                ("one source", all(&|i| format!("10.0.0.1 . {}", v4(i)))),
                ("same twice", all(&|i| format!("{} . {}", v6(i), v6(i)))),
            ],
            KeyType::Subflow => vec![
                (
                    "v4 ports",
                    all(&|i| format!("{}:{} . 10.9.0.1:443", v4(i / 8), 1024 + i % 8)),
                ),
                (
                    "one pair",
                    all(&|i| {
                        format!(
                            "10.0.0.1:{} . 10.0.0.2:{}",
                            1024 + i % 60000,
                            80 + i / 60000
                        )
                    }),
                ),
                (
                    "bench mix",
                    all(&|i| {
                        if i % 2 == 1 {
                            format!("[{}]:{} . [{}]:80", v6(i), 1024 + i % 60000, v6(i))
                        } else {
                            format!("{}:{} . {}:80", v4(i), 1024 + i % 60000, v4(i))
                        }
                    }),
                ),
            ],
            _ => Vec::new(),
        }
    }

    #[test]
    fn full_tables_probe_few_slots() {
        for n in [1_000u32, 100_000] {
            for kt in [KeyType::Addr, KeyType::Pair, KeyType::Subflow] {
                for (what, keys) in patterns(kt, n) {
                    let keys: Vec<Vec<u8>> = keys
                        .iter()
                        .map(|s| parse_key(kt, s).unwrap_or_else(|e| panic!("{s}: {e}")))
                        .collect();
                    let worst = longest_probe(kt, &keys, n);
                    assert!(
                        worst <= PROBES * 3 / 4,
                        "{kt} {what}: {n} keys at a load of at most 1/4 need a probe of {worst} slots"
                    );
                }
            }
        }
    }

    #[test]
    fn slot_bits_keep_the_load_at_a_quarter() {
        assert_eq!(slot_bits(1), abi::TAB_MIN_BITS);
        assert_eq!(slot_bits(1000), 12);
        assert_eq!(slot_bits(100_000), 19);
        assert_eq!(slot_bits(1 << 24), 26);
        assert!(slot_bits(super::super::MAX_SIZE) <= abi::TAB_MAX_BITS);
    }
}
