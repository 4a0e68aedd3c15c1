//! The RFC 6962 Merkle tree over the log's entries: hashing, the stored node numbering, the
//! right edge of the tree ([`Frontier`]), and inclusion and consistency proofs (RFC 6962
//! section 2.1, RFC 9162 section 2.1), with their verification.
//!
//! Security role: the tree lets a partner check, without reading any entry, that the log it
//! sees today extends the log it saw yesterday (a consistency proof between two signed tree
//! heads) and that a disclosure made to it is in the log everyone else sees (an inclusion
//! proof). Every function here is pure: the nodes come from the caller.
//!
//! # Hashes and numbering
//!
//! A leaf hash is `SHA-256(0x00 || E2)` (an entry's format-2 encoding, see [`crate::audit`]);
//! an interior node is `SHA-256(0x01 || left || right)`. Leaf `i` (from 0) is the entry with
//! sequence number `tree_base + 1 + i`. The hash of the complete subtree of height `level`
//! whose leaves are `n * 2^level .. (n + 1) * 2^level` is stored at index
//! [`stored_index`]`(level, n)`, the numbering of Go's `golang.org/x/mod/sumdb/tlog`
//! (`StoredHashIndex`): the nodes of a growing tree are numbered in the order they become
//! complete, so appending only ever adds rows at the end of the node table.

use sha2::{Digest, Sha256};

use super::canonical::ChainHash;

/// A tree hash (leaf, node or root).
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256()` (RFC 6962).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The stored index of the hash of the complete subtree at `level` number `n` (see the
/// module documentation).
pub fn stored_index(level: u8, n: u64) -> u64 {
    let mut n = n;
    for _ in 0..level {
        n = n.wrapping_mul(2).wrapping_add(1);
    }
    let mut i = 0u64;
    while n > 0 {
        i = i.wrapping_add(n);
        n >>= 1;
    }
    i.wrapping_add(u64::from(level))
}

/// How many hashes a tree of `size` leaves stores.
pub fn stored_count(size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    // Every hash up to the last leaf's, plus the parents completed by the last leaf.
    let last = size - 1;
    stored_index(0, last) + 1 + u64::from(size.trailing_zeros())
}

/// The right edge of a tree: the roots of its complete subtrees, largest first (one per bit
/// set in the size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves with these peaks (largest subtree first);
    /// `None` if their number does not match the size.
    pub fn new(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(Self { size, peaks })
    }

    /// From the stored form: the peaks concatenated.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(32) {
            return None;
        }
        let peaks = bytes
            .chunks_exact(32)
            .filter_map(|c| <Hash>::try_from(c).ok())
            .collect();
        Self::new(size, peaks)
    }

    /// The stored form: the peaks concatenated, largest subtree first.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.peaks.concat()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; calls `stored(index, hash)` for the leaf and for each subtree it
    /// completes, in stored order.
    pub fn push(&mut self, leaf: Hash, mut stored: impl FnMut(u64, Hash)) {
        let n = self.size;
        stored(stored_index(0, n), leaf);
        let mut h = leaf;
        let mut level = 0u8;
        let mut m = n;
        while m & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            level += 1;
            m >>= 1;
            stored(stored_index(level, m), h);
        }
        self.peaks.push(h);
        self.size = n + 1;
    }

    /// The RFC 6962 root hash.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The complete subtrees covering leaves `lo..hi`, as `(level, n)`, left to right: the
/// largest aligned subtree first. For the ranges RFC 6962 proofs use, the range's hash is the
/// right fold of these.
pub fn subtrees(lo: u64, hi: u64) -> Vec<(u8, u64)> {
    let mut out = Vec::new();
    let mut lo = lo;
    while lo < hi {
        let align = if lo == 0 { 63 } else { lo.trailing_zeros() };
        let fit = 63 - (hi - lo).leading_zeros();
        let level = align.min(fit);
        out.push((level as u8, lo >> level));
        lo += 1 << level;
    }
    out
}

/// The stored indexes needed for the hash of leaves `lo..hi`.
fn range_indexes(lo: u64, hi: u64, out: &mut Vec<u64>) {
    out.extend(
        subtrees(lo, hi)
            .into_iter()
            .map(|(l, n)| stored_index(l, n)),
    );
}

/// The hash of leaves `lo..hi` from stored hashes (`get` answers by stored index).
pub fn range_hash(lo: u64, hi: u64, get: &impl Fn(u64) -> Option<Hash>) -> Option<Hash> {
    let subs = subtrees(lo, hi);
    let mut it = subs.iter().rev();
    let (l, n) = it.next()?;
    let mut h = get(stored_index(*l, *n))?;
    for (l, n) in it {
        h = node_hash(&get(stored_index(*l, *n))?, &h);
    }
    Some(h)
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes make the inclusion proof of leaf `m` in a tree of `size` leaves,
/// in proof order (RFC 6962 `PATH`).
pub fn inclusion_ranges(m: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
        if hi - lo <= 1 {
            return;
        }
        let k = split(hi - lo);
        if m < lo + k {
            path(m, lo, lo + k, out);
            out.push((lo + k, hi));
        } else {
            path(m, lo + k, hi, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if m < size {
        path(m, 0, size, &mut out);
    }
    out
}

/// The ranges whose hashes make the consistency proof from a tree of `old` leaves to one of
/// `new` leaves, in proof order (RFC 6962 `PROOF`); empty unless `0 < old < new`.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    fn sub(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push((lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, lo, lo + k, whole, out);
            out.push((lo + k, hi));
        } else {
            sub(m - k, lo + k, hi, false, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if 0 < old && old < new {
        sub(old, 0, new, true, &mut out);
    }
    out
}

/// Every stored index the given ranges need.
pub fn indexes_for(ranges: &[(u64, u64)]) -> Vec<u64> {
    let mut out = Vec::new();
    for (lo, hi) in ranges {
        range_indexes(*lo, *hi, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The stored indexes needed for the root of a tree of `size` leaves.
pub fn root_indexes(size: u64) -> Vec<u64> {
    let mut out = Vec::new();
    range_indexes(0, size, &mut out);
    out
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2) from `(old, old_root)` to
/// `(new, new_root)`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && fr == *old_root && sr == *new_root
}

/// The leaf hash of a chain hash: for a format-2 entry they are the same 32 bytes.
pub fn leaf_of(h: &ChainHash) -> Hash {
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn leaf(i: u64) -> Hash {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(i.to_be_bytes());
        h.finalize().into()
    }

    /// RFC 6962 MTH, straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, HashMap<u64, Hash>, Vec<Hash>) {
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        let mut stored = HashMap::new();
        let mut f = Frontier::default();
        let mut roots = vec![f.root()];
        for l in &leaves {
            f.push(*l, |i, h| {
                assert!(stored.insert(i, h).is_none(), "index {i} stored twice");
            });
            roots.push(f.root());
        }
        (leaves, stored, roots)
    }

    #[test]
    fn the_frontier_gives_rfc6962_roots_and_dense_indexes() {
        let (leaves, stored, roots) = build(70);
        for n in 0..=70usize {
            assert_eq!(roots[n], mth(&leaves[..n]), "size {n}");
        }
        assert_eq!(stored.len() as u64, stored_count(70));
        // Indexes are dense: 0 .. count.
        for i in 0..stored_count(70) {
            assert!(stored.contains_key(&i), "index {i}");
        }
        let f = Frontier::from_bytes(70, &{
            let mut f = Frontier::default();
            for l in &leaves {
                f.push(*l, |_, _| {});
            }
            f.to_bytes()
        })
        .unwrap();
        assert_eq!(f.root(), roots[70]);
        assert!(Frontier::from_bytes(70, &[0; 32]).is_none());
    }

    #[test]
    fn stored_indexes_match_go_tlog() {
        // Values of golang.org/x/mod/sumdb/tlog StoredHashIndex.
        assert_eq!(stored_index(0, 0), 0);
        assert_eq!(stored_index(0, 1), 1);
        assert_eq!(stored_index(1, 0), 2);
        assert_eq!(stored_index(0, 2), 3);
        assert_eq!(stored_index(0, 3), 4);
        assert_eq!(stored_index(1, 1), 5);
        assert_eq!(stored_index(2, 0), 6);
        assert_eq!(stored_index(0, 4), 7);
    }

    #[test]
    fn proofs_verify_for_every_index_and_size() {
        let (_, stored, roots) = build(40);
        let get = |i: u64| stored.get(&i).copied();
        for size in 1..=40u64 {
            for m in 0..size {
                let proof: Vec<Hash> = inclusion_ranges(m, size)
                    .into_iter()
                    .map(|(lo, hi)| range_hash(lo, hi, &get).unwrap())
                    .collect();
                let leaf_h = get(stored_index(0, m)).unwrap();
                assert!(verify_inclusion(
                    m,
                    size,
                    &leaf_h,
                    &proof,
                    &roots[size as usize]
                ));
                assert!(!verify_inclusion(
                    m,
                    size,
                    &leaf(999),
                    &proof,
                    &roots[size as usize]
                ));
                if m + 1 < size {
                    assert!(!verify_inclusion(
                        m + 1,
                        size,
                        &leaf_h,
                        &proof,
                        &roots[size as usize]
                    ));
                }
            }
            for old in 1..size {
                let proof: Vec<Hash> = consistency_ranges(old, size)
                    .into_iter()
                    .map(|(lo, hi)| range_hash(lo, hi, &get).unwrap())
                    .collect();
                let (o, n) = (roots[old as usize], roots[size as usize]);
                assert!(
                    verify_consistency(old, size, &o, &n, &proof),
                    "{old} {size}"
                );
                assert!(!verify_consistency(old, size, &n, &n, &proof));
                assert!(!verify_consistency(old, size, &o, &o, &proof));
            }
        }
        assert!(verify_consistency(5, 5, &roots[5], &roots[5], &[]));
        assert!(!verify_consistency(5, 5, &roots[5], &roots[4], &[]));
        assert!(!verify_consistency(6, 5, &roots[5], &roots[5], &[]));
    }

    #[test]
    fn a_root_needs_one_stored_hash_per_bit_of_the_size() {
        assert_eq!(root_indexes(0), Vec::<u64>::new());
        assert_eq!(root_indexes(8), vec![stored_index(3, 0)]);
        assert_eq!(root_indexes(13).len(), 3);
        assert!(indexes_for(&inclusion_ranges(999_999, 1_000_000)).len() < 64);
    }
}
