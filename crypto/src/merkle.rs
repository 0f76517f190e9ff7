//! Batch Merkle tree, compatible with OpenZeppelin's `StandardMerkleTree` and `MerkleProof`.
//!
//! Leaves are the double-hashed message leaves of [`crate::Message::leaf`]; inner nodes are
//! `keccak256(min(a, b) || max(a, b))` (sorted pairs). The tree is the complete binary tree
//! OpenZeppelin's `makeMerkleTree` builds: `2n - 1` nodes in one array, root at index 0,
//! the children of `i` at `2i + 1` and `2i + 2`, leaves sorted ascending and stored in
//! reverse from the end. Roots, proofs and multiproofs therefore equal what the npm package
//! `@openzeppelin/merkle-tree` produces for the same leaf set, and Solidity's
//! `MerkleProof.processProof` / `processMultiProof` accept them.

use alloy_primitives::{B256, keccak256};

/// Errors building a tree or a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A tree needs at least one leaf.
    #[error("a batch tree needs at least one leaf")]
    Empty,
    /// The same leaf appears twice; a batch never holds one message twice.
    #[error("leaf {leaf} appears more than once")]
    DuplicateLeaf {
        /// The repeated leaf.
        leaf: B256,
    },
    /// The leaf is not in this tree.
    #[error("leaf {leaf} is not in the tree")]
    UnknownLeaf {
        /// The missing leaf.
        leaf: B256,
    },
}

/// Hash of an inner node: keccak256 of the two children in ascending byte order (64 bytes in).
pub fn node_hash(a: &B256, b: &B256) -> B256 {
    let mut buf = [0u8; 64];
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// A proof for several leaves at once, in OpenZeppelin's multiproof format.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MultiProof {
    /// The proven leaves, in the order the proof consumes them (descending tree index).
    pub leaves: Vec<B256>,
    /// Sibling hashes the verifier cannot compute itself.
    pub proof: Vec<B256>,
    /// For each hashing step: `true` to take the next node from the leaves/computed queue,
    /// `false` to take the next element of `proof`.
    pub proof_flags: Vec<bool>,
}

/// A Merkle tree over a batch's leaves (see the module docs for its shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTree {
    /// All `2n - 1` nodes; `nodes[0]` is the root.
    nodes: Vec<B256>,
    /// The leaves in ascending order; leaf `k` lives at `nodes[nodes.len() - 1 - k]`.
    sorted: Vec<B256>,
}

impl BatchTree {
    /// Builds the tree over `leaves` (any order; they are sorted as OpenZeppelin does).
    ///
    /// Cost: `n - 1` keccak256 of 64 bytes. Errors: [`MerkleError::Empty`],
    /// [`MerkleError::DuplicateLeaf`].
    pub fn new(leaves: &[B256]) -> Result<Self, MerkleError> {
        if leaves.is_empty() {
            return Err(MerkleError::Empty);
        }
        let mut sorted = leaves.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(MerkleError::DuplicateLeaf { leaf: w[0] });
        }
        let n = sorted.len();
        let mut nodes = vec![B256::ZERO; 2 * n - 1];
        let len = nodes.len();
        for (k, leaf) in sorted.iter().enumerate() {
            nodes[len - 1 - k] = *leaf;
        }
        for i in (0..len - n).rev() {
            nodes[i] = node_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        Ok(Self { nodes, sorted })
    }

    /// The root (32 bytes).
    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Always false: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    fn tree_index(&self, leaf: &B256) -> Result<usize, MerkleError> {
        let k = self
            .sorted
            .binary_search(leaf)
            .map_err(|_| MerkleError::UnknownLeaf { leaf: *leaf })?;
        Ok(self.nodes.len() - 1 - k)
    }

    /// The sibling path from `leaf` to the root (`ceil(log2 n)` hashes at most), as
    /// OpenZeppelin's `getProof`. Errors: [`MerkleError::UnknownLeaf`].
    pub fn proof(&self, leaf: &B256) -> Result<Vec<B256>, MerkleError> {
        let mut i = self.tree_index(leaf)?;
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.nodes[sibling]);
            i = (i - 1) / 2;
        }
        Ok(proof)
    }

    /// A multiproof for `leaves`, as OpenZeppelin's `getMultiProof`.
    ///
    /// Errors: [`MerkleError::UnknownLeaf`], [`MerkleError::DuplicateLeaf`],
    /// [`MerkleError::Empty`] for no leaves.
    pub fn multiproof(&self, leaves: &[B256]) -> Result<MultiProof, MerkleError> {
        if leaves.is_empty() {
            return Err(MerkleError::Empty);
        }
        let mut indices = leaves
            .iter()
            .map(|l| self.tree_index(l))
            .collect::<Result<Vec<_>, _>>()?;
        indices.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(w) = indices.windows(2).find(|w| w[0] == w[1]) {
            return Err(MerkleError::DuplicateLeaf {
                leaf: self.nodes[w[0]],
            });
        }
        let mut queue: std::collections::VecDeque<usize> = indices.iter().copied().collect();
        let mut proof = Vec::new();
        let mut proof_flags = Vec::new();
        while let Some(&j) = queue.front() {
            if j == 0 {
                break;
            }
            queue.pop_front();
            let sibling = if j % 2 == 1 { j + 1 } else { j - 1 };
            if queue.front() == Some(&sibling) {
                proof_flags.push(true);
                queue.pop_front();
            } else {
                proof_flags.push(false);
                proof.push(self.nodes[sibling]);
            }
            queue.push_back((j - 1) / 2);
        }
        Ok(MultiProof {
            leaves: indices.iter().map(|&i| self.nodes[i]).collect(),
            proof,
            proof_flags,
        })
    }
}

/// The root a single proof leads to (OpenZeppelin `MerkleProof.processProof`).
pub fn process_proof(leaf: &B256, proof: &[B256]) -> B256 {
    proof.iter().fold(*leaf, |acc, p| node_hash(&acc, p))
}

/// The root a multiproof leads to (OpenZeppelin `MerkleProof.processMultiProof`), or `None`
/// when the proof is malformed (lengths inconsistent, queue exhausted).
pub fn process_multiproof(mp: &MultiProof) -> Option<B256> {
    if mp.leaves.len() + mp.proof.len() != mp.proof_flags.len() + 1 {
        return None;
    }
    let mut queue: std::collections::VecDeque<B256> = mp.leaves.iter().copied().collect();
    let mut proof = mp.proof.iter();
    for &flag in &mp.proof_flags {
        let a = queue.pop_front()?;
        let b = if flag {
            queue.pop_front()?
        } else {
            *proof.next()?
        };
        queue.push_back(node_hash(&a, &b));
    }
    match (queue.pop_back(), proof.next()) {
        (Some(root), None) if queue.is_empty() => Some(root),
        (None, Some(root)) => Some(*root),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<B256> {
        (0..n as u64).map(|i| keccak256(i.to_be_bytes())).collect()
    }

    #[test]
    fn empty_and_duplicates_are_rejected() {
        assert_eq!(BatchTree::new(&[]), Err(MerkleError::Empty));
        let l = leaves(3);
        let dup = vec![l[0], l[1], l[0]];
        assert_eq!(
            BatchTree::new(&dup),
            Err(MerkleError::DuplicateLeaf { leaf: l[0] })
        );
    }

    #[test]
    fn single_leaf_root_is_the_leaf() {
        let l = leaves(1);
        let t = BatchTree::new(&l).unwrap();
        assert_eq!(t.root(), l[0]);
        assert!(t.proof(&l[0]).unwrap().is_empty());
    }

    #[test]
    fn unknown_leaf_has_no_proof() {
        let t = BatchTree::new(&leaves(5)).unwrap();
        let other = keccak256(b"other");
        assert_eq!(
            t.proof(&other),
            Err(MerkleError::UnknownLeaf { leaf: other })
        );
    }

    proptest! {
        #[test]
        fn every_proof_leads_to_the_root(n in 1usize..70, pick in proptest::collection::vec(any::<prop::sample::Index>(), 1..8)) {
            let l = leaves(n);
            let t = BatchTree::new(&l).unwrap();
            for leaf in &l {
                prop_assert_eq!(process_proof(leaf, &t.proof(leaf).unwrap()), t.root());
            }
            let mut chosen: Vec<B256> = pick.iter().map(|i| l[i.index(n)]).collect();
            chosen.sort();
            chosen.dedup();
            let mp = t.multiproof(&chosen).unwrap();
            prop_assert_eq!(process_multiproof(&mp), Some(t.root()));
        }

        #[test]
        fn root_does_not_depend_on_input_order(n in 1usize..40, seed in any::<u64>()) {
            let l = leaves(n);
            let mut shuffled = l.clone();
            // A cheap deterministic permutation.
            shuffled.sort_by_key(|x| keccak256([x.as_slice(), &seed.to_be_bytes()].concat()));
            prop_assert_eq!(BatchTree::new(&l).unwrap().root(), BatchTree::new(&shuffled).unwrap().root());
        }
    }

    #[test]
    fn tampered_proof_fails() {
        let l = leaves(9);
        let t = BatchTree::new(&l).unwrap();
        let mut p = t.proof(&l[3]).unwrap();
        p[0] = keccak256(b"x");
        assert_ne!(process_proof(&l[3], &p), t.root());
        let mut mp = t.multiproof(&l[2..5]).unwrap();
        mp.proof_flags.push(true);
        assert_eq!(process_multiproof(&mp), None);
    }
}
