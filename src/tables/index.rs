//! A prefix table's IPv4 index (abi.h struct emptcp_tab_pfx_head): its
//! IPv4 prefixes in a slot table (slots.rs) keyed by (prefix length,
//! address with the bits past the length cleared), in which a walk's
//! inline lookup probes the address's own slot at each length the head
//! lists, longest first: an array load per length where the trie is a
//! kernel call (docs/design.md "An IPv4 index for prefix sets"); when
//! that does not tell, the trie answers.
//! Past TAB_PFX_LENS lengths the head sends lookups to the IPv4 trie,
//! which holds every prefix whatever the index says (tries.rs), so that
//! the head may change at any time: a new element is written before the
//! head names its length, and a length leaves the head after its last
//! element. emptcp keeps the number of prefixes of each length after the
//! head, so that a delete knows when a length is gone without walking the
//! table.

use std::collections::HashSet;

use anyhow::Result;
use libbpf_rs::MapHandle;

use super::slots::{self, ArrayTable, Refused};
use super::KeyType;
use crate::abi;

/// IPv4 prefix lengths, /0 ..= /32.
const LENS: usize = 33;
/// aux() words: the head's lengths, then a count per length.
const AUX_LENS: usize = 0;
const AUX_COUNT: usize = 1;

/// An index's key: the IPv4 trie's key `k4` (prefix length, 4 address
/// bytes, the bits past the length clear) as the two words the BPF side
/// builds: the length, and the IPv4-mapped address's second word.
pub fn key(k4: &[u8]) -> Vec<u8> {
    let len = u32::from_ne_bytes([k4[0], k4[1], k4[2], k4[3]]);
    let mut k = u64::from(len).to_ne_bytes().to_vec();
    k.extend_from_slice(&[0, 0, 0xff, 0xff]);
    k.extend_from_slice(&k4[4..8]);
    k
}

fn len_of(k: &[u8]) -> usize {
    (k[0] as usize).min(LENS - 1)
}

/// The head's `lens` for the number of prefixes of each length: the
/// lengths held, longest first, each + 1 in a byte; the trie when there
/// are more than the BPF side probes.
pub fn lens_word(counts: &[u64; LENS]) -> u64 {
    let held: Vec<usize> = (0..LENS).rev().filter(|l| counts[*l] > 0).collect();
    if held.len() > abi::TAB_PFX_LENS {
        return u64::from(abi::TAB_PFX_TRIE);
    }
    held.iter()
        .enumerate()
        .fold(0, |w, (i, l)| w | (*l as u64 + 1) << (8 * i))
}

/// The array of an empty index for 2^`bits` slots.
pub fn create(bits: u32, name: &str) -> Result<MapHandle> {
    slots::create_bits(KeyType::Prefix, bits, name)
}

/// An open index.
pub struct Index(ArrayTable);

impl Index {
    pub fn open(m: &MapHandle) -> Result<Index> {
        Ok(Index(ArrayTable::open(KeyType::Prefix, m)?))
    }

    fn counts(&self) -> Result<[u64; LENS]> {
        self.0.touch_aux(AUX_COUNT + LENS)?;
        let mut c = [0u64; LENS];
        for (l, n) in c.iter_mut().enumerate() {
            *n = self.0.aux(AUX_COUNT + l)?;
        }
        Ok(c)
    }

    /// The counts, then the head's lengths (mapped by counts()).
    fn write(&self, counts: &[u64; LENS]) -> Result<()> {
        for (l, n) in counts.iter().enumerate() {
            self.0.set_aux(AUX_COUNT + l, *n)?;
        }
        self.0.set_aux(AUX_LENS, lens_word(counts))
    }

    /// The head's lengths word.
    pub fn lens(&self) -> Result<u64> {
        self.0.aux(AUX_LENS)
    }

    /// Adds (or changes) IPv4 prefixes (`elems`: trie keys and values),
    /// all or none (slots.rs ArrayTable::add); the head names a new
    /// length once its elements are written.
    pub fn add(&self, elems: &[(Vec<u8>, u64)], size: usize) -> Result<(), Refused> {
        self.0.will_touch(elems.len())?;
        let mut counts = self.counts()?;
        let ks: Vec<(Vec<u8>, u64)> = elems.iter().map(|(k, v)| (key(k), *v)).collect();
        let mut seen = HashSet::new();
        for (k, _) in &ks {
            if seen.insert(k.as_slice()) && self.0.get(k)?.is_none() {
                counts[len_of(k)] += 1;
            }
        }
        self.0.add(&ks, size)?;
        Ok(self.write(&counts)?)
    }

    /// Deletes IPv4 prefixes (trie keys); the head drops a length once
    /// its last element is gone.
    pub fn del(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.0.will_touch(keys.len())?;
        let mut counts = self.counts()?;
        let ks: Vec<Vec<u8>> = keys.iter().map(|k| key(k)).collect();
        let mut seen = HashSet::new();
        for k in &ks {
            if seen.insert(k.as_slice()) && self.0.get(k)?.is_some() {
                let n = &mut counts[len_of(k)];
                *n = n.saturating_sub(1);
            }
        }
        self.0.del(&ks)?;
        self.write(&counts)
    }

    /// Whether the index should be built anew (slots.rs ArrayTable::worn).
    pub fn worn(&self) -> Result<bool> {
        self.0.worn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lens_name_the_lengths_held_longest_first() {
        let mut c = [0u64; LENS];
        assert_eq!(lens_word(&c), 0, "no IPv4 prefix: every lookup misses");
        c[24] = 1000;
        assert_eq!(lens_word(&c), 25);
        c[0] = 1;
        c[32] = 2;
        assert_eq!(lens_word(&c), 33 | 25 << 8 | 1 << 16);
        c[8] = 1;
        assert_eq!(lens_word(&c), 33 | 25 << 8 | 9 << 16 | 1 << 24);
        c[16] = 1;
        assert_eq!(
            lens_word(&c),
            u64::from(abi::TAB_PFX_TRIE),
            "more lengths than a lookup probes: the trie"
        );
    }

    #[test]
    fn the_key_is_the_mapped_address_word() {
        let k = crate::tables::parse_key(KeyType::Prefix, "10.1.2.0/23").unwrap();
        let k4 = &[&(23u32).to_ne_bytes()[..], &k[16..20]].concat();
        let ix = key(k4);
        assert_eq!(u64::from_ne_bytes(ix[..8].try_into().unwrap()), 23);
        // the second word of the IPv4-mapped address, as tables.h builds it
        assert_eq!(ix[8..], k[12..20]);
        assert_eq!(ix[12..], [10, 1, 2, 0]);
    }
}
