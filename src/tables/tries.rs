//! Prefix tables: two LPM tries at the same id of two outer maps, one per
//! family (tables.h): IPv4 with 8-byte keys (prefix length, 4 address
//! bytes), IPv6 with 20. The kernel compares a trie node 8 bytes, then 4
//! at a time (`longest_prefix_match`): an IPv4-mapped 16-byte key took
//! three steps a node where 4 bytes take one, and one trie for both
//! families put a node splitting them in front of every IPv4 lookup.
//!
//! The IPv4 trie's prefixes are also in the table's IPv4 index
//! (index.rs), which lookups probe first: changes go to both, the trie
//! first, so that the trie always holds every prefix.
//!
//! A prefix's key in emptcp stays the IPv4-mapped 20 bytes of parse_key
//! (one text form, one order); it is split here. A key in the mapped
//! space (`::ffff:0:0/96` and longer) is an IPv4 prefix; any other IPv6
//! prefix matches IPv6 packets only, as the literal `src`/`dst` does.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::index::{self, Index};
use super::{quoted, slots, TableDef};

/// Key bytes of a trie of each family.
const KEY4: usize = 8;
const KEY6: usize = 20;

/// The length of an IPv4-mapped prefix of the IPv4 /0.
const MAPPED_BITS: u32 = 96;

/// A prefix table's two tries and its IPv4 index.
pub struct Tries {
    pub v4: MapHandle,
    pub v6: MapHandle,
    /// the IPv4 index's array (index.rs)
    pub ix: MapHandle,
}

/// What a change left the IPv4 index needing.
#[derive(Debug, PartialEq, Eq)]
pub enum Reindex {
    No,
    /// a new index, built from the trie (reindex()): a prefix found no
    /// free slot, or many slots are deleted ones
    Yes,
}

/// `k` (a 20-byte prefix key) as the IPv4 trie's key, when it is one.
fn key4(k: &[u8]) -> Option<[u8; KEY4]> {
    let bits = u32::from_ne_bytes(k.get(..4)?.try_into().ok()?);
    let mapped = k.get(4..16)? == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    if !mapped || bits < MAPPED_BITS {
        return None;
    }
    let mut out = [0u8; KEY4];
    out[..4].copy_from_slice(&(bits - MAPPED_BITS).to_ne_bytes());
    out[4..].copy_from_slice(k.get(16..20)?);
    Some(out)
}

/// The 20-byte key of an IPv4 trie's key.
fn mapped(k4: &[u8]) -> Vec<u8> {
    let bits = u32::from_ne_bytes([k4[0], k4[1], k4[2], k4[3]]) + MAPPED_BITS;
    let mut k = bits.to_ne_bytes().to_vec();
    k.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    k.extend_from_slice(&k4[4..KEY4]);
    k
}

/// The value of key `k` in trie `m` (a longest match).
fn value(m: &MapHandle, k: &[u8]) -> Option<u64> {
    let v = m.lookup(k, MapFlags::ANY).ok().flatten()?;
    Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?))
}

/// An empty trie of one family (`v4`) for `size` prefixes.
pub fn create(v4: bool, size: u32, name: &str) -> Result<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: super::BPF_F_NO_PREALLOC,
        ..Default::default()
    };
    MapHandle::create(
        MapType::LpmTrie,
        Some(format!("emptcp_t_{}", &name[..name.len().min(6)])),
        if v4 { KEY4 } else { KEY6 } as u32,
        8,
        size.max(1),
        &opts,
    )
    .with_context(|| format!("failed to create the table of {}", quoted(name)))
}

impl Tries {
    /// Two empty tries, each able to take `size` prefixes, and an empty
    /// index for as many.
    pub fn new(size: u32, name: &str) -> Result<Tries> {
        Ok(Tries {
            v4: create(true, size, name)?,
            v6: create(false, size, name)?,
            ix: index::create(slots::slot_bits(size), name)?,
        })
    }

    fn index(&self) -> Result<Index> {
        Index::open(&self.ix)
    }

    /// The IPv4 index's head: the lengths lookups probe, or the trie
    /// (abi.h struct emptcp_tab_pfx_head `lens`).
    pub fn index_lens(&self) -> Result<u64> {
        self.index()?.lens()
    }

    /// A new index holding the IPv4 trie's prefixes, for a table of
    /// `def`, not yet in any slot.
    pub fn reindex(&self, def: &TableDef) -> Result<MapHandle> {
        let ix = index::create(slots::slot_bits(def.size), &def.name)?;
        let v4: Vec<(Vec<u8>, u64)> = self
            .v4
            .keys()
            .filter_map(|k| Some((k.clone(), value(&self.v4, &k)?)))
            .collect();
        Index::open(&ix)?
            .add(&v4, def.size as usize)
            .map_err(|r| super::refused(def, r))?;
        Ok(ix)
    }

    /// The trie that holds `k` and `k` as its key there.
    fn trie_of(&self, k: &[u8]) -> (&MapHandle, Vec<u8>) {
        match key4(k) {
            Some(k4) => (&self.v4, k4.to_vec()),
            None => (&self.v6, k.to_vec()),
        }
    }

    /// Adds (or changes) `elems` in their tries; returns the IPv4 ones
    /// (trie keys).
    fn fill(&self, elems: &[(Vec<u8>, u64)]) -> Result<Vec<(Vec<u8>, u64)>> {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (k, v) in elems {
            match key4(k) {
                Some(k4) => v4.push((k4.to_vec(), *v)),
                None => v6.push((k.clone(), *v)),
            }
        }
        super::fill(&self.v4, KEY4, &v4)?;
        super::fill(&self.v6, KEY6, &v6)?;
        Ok(v4)
    }

    /// Fills a new table (Tries::new) with `elems`.
    pub fn fill_new(&self, def: &TableDef, elems: &[(Vec<u8>, u64)]) -> Result<()> {
        let v4 = self.fill(elems)?;
        self.index()?
            .add(&v4, def.size as usize)
            .map_err(|r| super::refused(def, r))
    }

    /// Every element (20-byte keys), in key order.
    pub fn elements(&self) -> Vec<(Vec<u8>, u64)> {
        let mut out: Vec<(Vec<u8>, u64)> = self
            .v4
            .keys()
            .filter_map(|k| Some((mapped(&k), value(&self.v4, &k)?)))
            .chain(self.v6.keys().filter_map(|k| {
                let v = value(&self.v6, &k)?;
                Some((k, v))
            }))
            .collect();
        out.sort();
        out
    }

    /// Prefixes held, both families.
    pub fn len(&self) -> usize {
        self.v4.keys().count() + self.v6.keys().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of exactly prefix `k`, if it is there. A trie's lookup
    /// is a longest match (10.1.0.0/24 finds 10.0.0.0/8's value);
    /// BPF_MAP_GET_NEXT_KEY tells whether the key itself is there: for a
    /// key not in the map it gives the first key (bpf(2)). `first`: each
    /// trie's first key (Tries::firsts).
    fn exact(&self, k: &[u8], first: &[Option<Vec<u8>>; 2]) -> Option<Vec<u8>> {
        let (m, k) = self.trie_of(k);
        let v = m.lookup(&k, MapFlags::ANY).ok().flatten()?;
        let first = &first[usize::from(k.len() != KEY4)];
        let mut next = vec![0u8; k.len()];
        // SAFETY: k and next are the trie's key size, alive for the call.
        let r = unsafe {
            libbpf_sys::bpf_map_get_next_key(
                m.as_fd().as_raw_fd(),
                k.as_ptr().cast(),
                next.as_mut_ptr().cast(),
            )
        };
        // no next key: k is the last one, so it is there
        (r != 0 || Some(&next) != first.as_ref()).then_some(v)
    }

    /// The first key of each trie (IPv4, IPv6), for `exact`.
    fn firsts(&self) -> [Option<Vec<u8>>; 2] {
        [self.v4.keys().next(), self.v6.keys().next()]
    }

    /// Adds (or changes) `elems`, all or none: more prefixes than the
    /// table's size is one line and nothing changes; when the kernel
    /// refuses one, or the index cannot take them, the ones added are
    /// deleted again and the changed ones get their old values back.
    pub fn add(&self, def: &TableDef, elems: &[(Vec<u8>, u64)]) -> Result<Reindex> {
        let first = self.firsts();
        let old: Vec<Option<Vec<u8>>> = elems.iter().map(|(k, _)| self.exact(k, &first)).collect();
        let new: HashSet<&[u8]> = elems
            .iter()
            .zip(&old)
            .filter(|(_, o)| o.is_none())
            .map(|((k, _), _)| k.as_slice())
            .collect();
        // the "is full" line when the new prefixes do not fit (counts
        // every key: ~70 ms at 100,000)
        let over = || {
            if new.is_empty() {
                return None;
            }
            let have = self.len();
            (have + new.len() > def.size as usize).then(|| {
                anyhow!(
                    "{} {} is full: {have} elements and {} new do not fit its size {}",
                    def.what(),
                    quoted(&def.name),
                    new.len(),
                    def.size
                )
            })
        };
        // Each trie takes `size` prefixes, so the kernel refuses one more
        // than the size when the table holds one family: then nothing is
        // counted first. Both families, or new prefixes of both: count.
        let mut adds = [false; 2];
        for k in &new {
            adds[usize::from(key4(k).is_none())] = true;
        }
        let used = [adds[0] || first[0].is_some(), adds[1] || first[1].is_some()];
        if let Some(e) = (used[0] && used[1]).then(over).flatten() {
            return Err(e);
        }
        let undo = || {
            for ((k, _), o) in elems.iter().zip(&old) {
                let (m, k) = self.trie_of(k);
                let _ = match o {
                    None => m.delete(&k),
                    Some(v) => m.update(&k, v, MapFlags::ANY),
                };
            }
        };
        let v4 = match self.fill(elems) {
            Ok(v4) => v4,
            Err(e) => {
                undo();
                if let Some(full) = over() {
                    return Err(full);
                }
                return Err(e).with_context(|| {
                    format!("failed to add to {} {}", def.what(), quoted(&def.name))
                });
            }
        };
        match self.index().map(|ix| ix.add(&v4, def.size as usize)) {
            Ok(Ok(())) => Ok(Reindex::No),
            Ok(Err(slots::Refused::NoSlot(_))) => Ok(Reindex::Yes),
            Ok(Err(r)) => {
                undo();
                Err(super::refused(def, r))
            }
            Err(e) => {
                undo();
                Err(e)
            }
        }
    }

    /// Deletes `keys`; one that is not there (exactly: a longer prefix
    /// inside one that is there is not) refuses them all. The index goes
    /// first: a length leaves its head before the trie loses a prefix.
    pub fn del(&self, def: &TableDef, keys: &[Vec<u8>]) -> Result<Reindex> {
        let first = self.firsts();
        if let Some(k) = keys.iter().find(|k| self.exact(k, &first).is_none()) {
            bail!(
                "{} {}: element {} is not in it",
                def.what(),
                quoted(&def.name),
                quoted(&super::format_key(def.key, k))
            );
        }
        let v4: Vec<Vec<u8>> = keys.iter().filter_map(|k| key4(k)).map(Vec::from).collect();
        let ix = self.index()?;
        ix.del(&v4)?;
        for k in keys {
            let (m, k) = self.trie_of(k);
            m.delete(&k).map_err(|e| anyhow!("{e}")).with_context(|| {
                format!("failed to delete from {} {}", def.what(), quoted(&def.name))
            })?;
        }
        Ok(if ix.worn()? {
            Reindex::Yes
        } else {
            Reindex::No
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{parse_key, KeyType};

    #[test]
    fn v4_prefixes_split_off_and_back() {
        for (s, bits) in [("10.1.0.0/16", 16), ("0.0.0.0/0", 0), ("10.1.2.3", 32)] {
            let k = parse_key(KeyType::Prefix, s).unwrap();
            let k4 = key4(&k).unwrap_or_else(|| panic!("{s} is IPv4"));
            assert_eq!(u32::from_ne_bytes(k4[..4].try_into().unwrap()), bits, "{s}");
            assert_eq!(mapped(&k4), k, "{s}");
        }
        // the mapped space written as IPv6 is IPv4; shorter IPv6 is not
        let k = parse_key(KeyType::Prefix, "::ffff:10.0.0.0/104").unwrap();
        assert_eq!(key4(&k).unwrap()[4..], [10, 0, 0, 0]);
        for s in [
            "::/0",
            "fd00::/64",
            "::ffff:0:0/95",
            "::1/128",
            "::a00:1/128",
        ] {
            let k = parse_key(KeyType::Prefix, s).unwrap();
            assert!(key4(&k).is_none(), "{s} is IPv6");
        }
    }
}
