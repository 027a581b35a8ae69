//! RFC 6962 Merkle trees over the record hashes: roots, an incremental frontier, and
//! inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4).
//!
//! Leaves are arbitrary bytes (the ledger uses each record's 32-byte hash); the leaf hash is
//! `SHA-256(0x00 || data)` and an interior node `SHA-256(0x01 || left || right)`, so a leaf
//! can never be mistaken for a node. Proofs are built in one pass over the leaves with
//! O(log n) memory ([`ProofBuilder`]), so a proof over a ledger of any size never holds all
//! its hashes at once.

use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// Why a proof could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error("leaf {index} is not in a tree of {tree_size} leaves")]
    IndexOutOfRange {
        /// Index asked for, from 0.
        index: u64,
        /// Tree size asked for.
        tree_size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one, or from the empty tree.
    #[error("no consistency proof from a tree of {old_size} leaves to one of {new_size}")]
    BadSizes {
        /// The earlier tree's size.
        old_size: u64,
        /// The later tree's size.
        new_size: u64,
    },
    /// Fewer leaves were supplied than the proof needs.
    #[error("the proof needs {needed} leaves, {given} were given")]
    TooFewLeaves {
        /// Leaves the proof covers.
        needed: u64,
        /// Leaves supplied.
        given: u64,
    },
}

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The Merkle Tree Hash of `leaves`, computed from scratch by the recursive definition of
/// RFC 6962 §2.1 (the reference the incremental [`Frontier`] is tested against).
pub fn root<T: AsRef<[u8]>>(leaves: &[T]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => leaf_hash(one.as_ref()),
        _ => {
            let k = split(leaves.len() as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The compact frontier of a growing tree: the roots of its maximal perfect subtrees, one per
/// set bit of the size, so O(log n) hashes stand for any number of leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Left to right, largest subtree first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf given its data.
    pub fn push(&mut self, leaf_data: &[u8]) {
        self.push_leaf_hash(leaf_hash(leaf_data));
    }

    /// Appends a leaf given its leaf hash (`SHA-256(0x00 || data)`).
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing one bit is a perfect subtree of the same height as the new one.
        while size & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit of the size");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The leaf ranges whose subtree hashes make up the audit path of leaf `index` in a tree of
/// `tree_size` leaves, in proof order (from the leaf up). RFC 6962 §2.1.1 `PATH`.
fn inclusion_ranges(index: u64, tree_size: u64) -> Vec<Range<u64>> {
    let (mut lo, mut hi) = (0, tree_size);
    let mut ranges = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            ranges.push(lo + k..hi);
            hi = lo + k;
        } else {
            ranges.push(lo..lo + k);
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The leaf ranges of a consistency proof from `old_size` to `new_size` leaves
/// (0 < old_size ≤ new_size), in proof order. RFC 6962 §2.1.2 `SUBPROOF`.
fn consistency_ranges(old_size: u64, new_size: u64) -> Vec<Range<u64>> {
    let (mut lo, mut m, mut n, mut whole_old_tree) = (0, old_size, new_size, true);
    let mut ranges = Vec::new();
    loop {
        if m == n {
            if !whole_old_tree {
                ranges.push(lo..lo + n);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            ranges.push(lo + k..lo + n);
            n = k;
        } else {
            ranges.push(lo..lo + k);
            lo += k;
            m -= k;
            n -= k;
            whole_old_tree = false;
        }
    }
    ranges.reverse();
    ranges
}

/// Builds a proof from the leaves streamed in order, keeping only O(log n) hashes.
///
/// ```
/// use metaloop_ledger::merkle::{ProofBuilder, root, verify_inclusion};
/// let leaves: Vec<[u8; 1]> = (0..5u8).map(|i| [i]).collect();
/// let mut builder = ProofBuilder::inclusion(2, 5).unwrap();
/// for leaf in &leaves {
///     builder.push(leaf);
/// }
/// let proof = builder.finish().unwrap();
/// assert!(verify_inclusion(&leaves[2], 2, 5, &proof, &root(&leaves)));
/// ```
#[derive(Debug, Clone)]
pub struct ProofBuilder {
    /// Ranges sorted by start, each with its position in the proof.
    ranges: Vec<(Range<u64>, usize)>,
    /// The next range to fill.
    next: usize,
    current: Frontier,
    proof: Vec<Hash>,
    /// Leaves pushed so far.
    pushed: u64,
    /// Leaves the proof needs.
    needed: u64,
}

impl ProofBuilder {
    /// A builder for the audit path of leaf `index` (from 0) in the tree of the first
    /// `tree_size` leaves.
    pub fn inclusion(index: u64, tree_size: u64) -> Result<Self, MerkleError> {
        if index >= tree_size {
            return Err(MerkleError::IndexOutOfRange { index, tree_size });
        }
        Ok(Self::over(inclusion_ranges(index, tree_size), tree_size))
    }

    /// A builder for the proof that the tree of the first `old_size` leaves is a prefix of
    /// the tree of the first `new_size` (empty when the sizes are equal).
    pub fn consistency(old_size: u64, new_size: u64) -> Result<Self, MerkleError> {
        if old_size == 0 || old_size > new_size {
            return Err(MerkleError::BadSizes { old_size, new_size });
        }
        Ok(Self::over(consistency_ranges(old_size, new_size), new_size))
    }

    fn over(ranges: Vec<Range<u64>>, needed: u64) -> Self {
        let proof = vec![[0; 32]; ranges.len()];
        let mut ranges: Vec<(Range<u64>, usize)> = ranges.into_iter().zip(0..).collect();
        ranges.sort_by_key(|(r, _)| r.start);
        Self {
            ranges,
            next: 0,
            current: Frontier::new(),
            proof,
            pushed: 0,
            needed,
        }
    }

    /// Feeds the next leaf's data (leaf 0 first). Leaves past the tree size are ignored.
    pub fn push(&mut self, leaf_data: &[u8]) {
        let index = self.pushed;
        self.pushed += 1;
        let Some((range, slot)) = self.ranges.get(self.next) else {
            return;
        };
        if !range.contains(&index) {
            return;
        }
        self.current.push(leaf_data);
        if self.current.size() == range.end - range.start {
            self.proof[*slot] = self.current.root();
            self.current = Frontier::new();
            self.next += 1;
        }
    }

    /// How many leaves the proof covers (feed at least this many).
    pub fn leaves_needed(&self) -> u64 {
        self.needed
    }

    /// The proof, once every leaf it covers was pushed.
    pub fn finish(self) -> Result<Vec<Hash>, MerkleError> {
        if self.pushed < self.needed {
            return Err(MerkleError::TooFewLeaves {
                needed: self.needed,
                given: self.pushed,
            });
        }
        debug_assert_eq!(self.next, self.ranges.len());
        Ok(self.proof)
    }
}

/// The audit path of leaf `index` (from 0) in the tree of the first `tree_size` leaves.
pub fn inclusion_proof<T: AsRef<[u8]>>(
    leaves: &[T],
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    let mut builder = ProofBuilder::inclusion(index, tree_size)?;
    for leaf in leaves
        .iter()
        .take(usize::try_from(tree_size).unwrap_or(usize::MAX))
    {
        builder.push(leaf.as_ref());
    }
    builder.finish()
}

/// The consistency proof between the trees of the first `old_size` and `new_size` leaves.
pub fn consistency_proof<T: AsRef<[u8]>>(
    leaves: &[T],
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    let mut builder = ProofBuilder::consistency(old_size, new_size)?;
    for leaf in leaves
        .iter()
        .take(usize::try_from(new_size).unwrap_or(usize::MAX))
    {
        builder.push(leaf.as_ref());
    }
    builder.finish()
}

/// The root that `proof` leads to from the leaf with hash `leaf` at `index` in a tree of
/// `tree_size` leaves, or `None` if the proof has the wrong shape (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Option<Hash> {
    if index >= tree_size {
        return None;
    }
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// Whether `proof` shows that `leaf_data` is leaf `index` of the tree of `tree_size` leaves
/// with root `root`.
pub fn verify_inclusion(
    leaf_data: &[u8],
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    root_from_inclusion_proof(&leaf_hash(leaf_data), index, tree_size, proof)
        .is_some_and(|r| r == *root)
}

/// Whether `proof` shows that the tree of `old_size` leaves with root `old_root` is a prefix
/// of the tree of `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        // Every tree extends the empty one.
        return proof.is_empty();
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    // A perfect old tree is itself a node of the new one: its root starts the path.
    let (start, path) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; i % 5]).collect()
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        let expected = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in expected {
            assert_eq!(split(n), k, "n = {n}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    #[test]
    fn frontier_matches_the_recursive_definition() {
        let all = leaves(70);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), root::<Vec<u8>>(&[]));
        for n in 1..=all.len() {
            frontier.push(&all[n - 1]);
            assert_eq!(frontier.size(), n as u64);
            assert_eq!(frontier.root(), root(&all[..n]), "n = {n}");
            assert_eq!(frontier.peaks.len(), n.count_ones() as usize);
        }
    }

    #[test]
    fn ranges_partition_the_other_leaves() {
        for n in 1..40u64 {
            for m in 0..n {
                let mut covered: Vec<u64> = inclusion_ranges(m, n).into_iter().flatten().collect();
                covered.push(m);
                covered.sort();
                assert_eq!(covered, (0..n).collect::<Vec<_>>(), "m = {m}, n = {n}");
            }
        }
    }

    #[test]
    fn proof_builder_needs_every_leaf_it_covers() {
        let all = leaves(7);
        let mut b = ProofBuilder::inclusion(6, 7).unwrap();
        for leaf in &all[..6] {
            b.push(leaf);
        }
        assert_eq!(
            b.finish().unwrap_err(),
            MerkleError::TooFewLeaves {
                needed: 7,
                given: 6
            }
        );
        assert_eq!(
            inclusion_proof(&all, 7, 7).unwrap_err().to_string(),
            "leaf 7 is not in a tree of 7 leaves"
        );
        assert!(consistency_proof(&all, 0, 7).is_err());
        assert!(consistency_proof(&all, 5, 4).is_err());
    }

    #[test]
    fn consistency_proofs_verify_for_all_small_sizes() {
        let all = leaves(33);
        for n in 1..=all.len() as u64 {
            let new_root = root(&all[..n as usize]);
            for m in 1..=n {
                let old_root = root(&all[..m as usize]);
                let proof = consistency_proof(&all, m, n).unwrap();
                assert!(
                    verify_consistency(m, n, &old_root, &new_root, &proof),
                    "{m} -> {n}"
                );
                if m < n {
                    assert!(!verify_consistency(m, n, &new_root, &new_root, &proof));
                    assert!(!verify_consistency(m, n, &old_root, &new_root, &[]));
                }
            }
        }
    }
}
