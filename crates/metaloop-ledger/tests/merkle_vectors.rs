//! The RFC 6962 Merkle tree against published known answers, and proofs against roots
//! computed from scratch.
//!
//! Known answers: the certificate-transparency reference tree of eight leaves, from
//! google/certificate-transparency `cpp/merkletree/merkle_tree_test.cc` (`kInputs`,
//! `kSHA256Roots`, `kSHA256Paths`, `kSHA256Proofs`, `kSHA256EmptyTreeHash`), also carried by
//! transparency-dev/merkle `proof/verify_test.go` (`leaves`, `roots`, `inclusionProofs`,
//! `consistencyProofs`, which adds the 6 → 7 consistency proof). In both, path vectors
//! number leaves from 1; here indices are from 0.

use metaloop_ledger::hex;
use metaloop_ledger::merkle::{
    Frontier, Hash, MerkleError, consistency_proof, empty_root, inclusion_proof, leaf_hash,
    node_hash, root, root_from_inclusion_proof, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn h(text: &str) -> Hash {
    hex::decode_hash(text).unwrap()
}

fn bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `kInputs`.
fn ct_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .into_iter()
    .map(bytes)
    .collect()
}

/// `kSHA256Roots`: the roots of the trees of the first 1..=8 leaves.
const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// `kSHA256EmptyTreeHash`.
const CT_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `kSHA256Paths` (leaf index from 0, tree size, audit path).
fn ct_paths() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// `kSHA256Proofs` plus transparency-dev's 6 → 7 (old size, new size, proof).
fn ct_consistency() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(empty_root(), h(CT_EMPTY));
    assert_eq!(root::<Vec<u8>>(&[]), h(CT_EMPTY));
    assert_eq!(Frontier::new().root(), h(CT_EMPTY));
}

#[test]
fn roots_of_the_reference_tree_match_for_every_size() {
    let leaves = ct_leaves();
    let mut frontier = Frontier::new();
    for (n, expected) in CT_ROOTS.iter().enumerate() {
        frontier.push(&leaves[n]);
        assert_eq!(
            hex::encode(&root(&leaves[..=n])),
            *expected,
            "size {}",
            n + 1
        );
        assert_eq!(
            hex::encode(&frontier.root()),
            *expected,
            "incremental, size {}",
            n + 1
        );
    }
    // A one-leaf tree's root is its leaf hash.
    assert_eq!(leaf_hash(b""), h(CT_ROOTS[0]));
}

#[test]
fn inclusion_proofs_of_the_reference_tree_match_and_verify() {
    let leaves = ct_leaves();
    for (index, size, expected) in ct_paths() {
        let proof = inclusion_proof(&leaves, index, size).unwrap();
        assert_eq!(proof, expected, "leaf {index} of {size}");
        let root = h(CT_ROOTS[size as usize - 1]);
        assert!(verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &proof,
            &root
        ));
        assert_eq!(
            root_from_inclusion_proof(&leaf_hash(&leaves[index as usize]), index, size, &proof),
            Some(root)
        );
    }
}

#[test]
fn wrong_inclusion_claims_are_rejected() {
    // The corruptions of the reference test (`VerifierCheck`): wrong index, tree size, leaf,
    // root, and added, removed or altered path elements.
    let leaves = ct_leaves();
    for (index, size, proof) in ct_paths().into_iter().skip(1) {
        let root = h(CT_ROOTS[size as usize - 1]);
        let leaf = &leaves[index as usize];
        let ok = |i: u64, n: u64, leaf: &[u8], proof: &[Hash], root: &Hash| {
            verify_inclusion(leaf, i, n, proof, root)
        };
        assert!(ok(index, size, leaf, &proof, &root));
        if index > 0 {
            assert!(!ok(index - 1, size, leaf, &proof, &root));
        }
        assert!(!ok(index + 1, size, leaf, &proof, &root));
        assert!(!ok(index ^ 2, size, leaf, &proof, &root));
        assert!(!ok(index, size * 2, leaf, &proof, &root));
        assert!(!ok(index, size / 2, leaf, &proof, &root));
        assert!(!ok(index, size, b"WrongLeaf", &proof, &root));
        assert!(!ok(index, size, leaf, &proof, &h(CT_EMPTY)));
        for j in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[j] = h(CT_EMPTY);
            assert!(!ok(index, size, leaf, &wrong, &root));
            let mut flipped = proof.clone();
            flipped[j][0] ^= 8;
            assert!(!ok(index, size, leaf, &flipped, &root));
        }
        let mut longer = proof.clone();
        longer.push(root);
        assert!(!ok(index, size, leaf, &longer, &root));
        let mut front = vec![root];
        front.extend_from_slice(&proof);
        assert!(!ok(index, size, leaf, &front, &root));
        assert!(!ok(index, size, leaf, &proof[..proof.len() - 1], &root));
    }
    // Invalid positions (`VerifyPath` with invalid paths).
    for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1)] {
        assert!(!verify_inclusion(b"", index, size, &[], &h(CT_EMPTY)));
        assert!(!verify_inclusion(b"", index, size, &[], &leaf_hash(b"")));
    }
}

#[test]
fn consistency_proofs_of_the_reference_tree_match_and_verify() {
    let leaves = ct_leaves();
    for (old, new, expected) in ct_consistency() {
        let proof = consistency_proof(&leaves, old, new).unwrap();
        assert_eq!(proof, expected, "{old} -> {new}");
        let old_root = h(CT_ROOTS[old as usize - 1]);
        let new_root = h(CT_ROOTS[new as usize - 1]);
        assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
        if proof.is_empty() {
            continue;
        }
        // The reference test's corruptions (`VerifierConsistencyCheck`).
        assert!(!verify_consistency(
            old - 1,
            new,
            &old_root,
            &new_root,
            &proof
        ));
        assert!(!verify_consistency(
            old + 1,
            new,
            &old_root,
            &new_root,
            &proof
        ));
        assert!(!verify_consistency(
            old ^ 2,
            new,
            &old_root,
            &new_root,
            &proof
        ));
        assert!(!verify_consistency(
            old,
            new * 2,
            &old_root,
            &new_root,
            &proof
        ));
        assert!(!verify_consistency(
            old,
            new / 2,
            &old_root,
            &new_root,
            &proof
        ));
        assert!(!verify_consistency(old, new, &new_root, &old_root, &proof));
        assert!(!verify_consistency(
            old,
            new,
            &h(CT_EMPTY),
            &new_root,
            &proof
        ));
        assert!(!verify_consistency(
            old,
            new,
            &old_root,
            &h(CT_EMPTY),
            &proof
        ));
        assert!(!verify_consistency(old, new, &old_root, &new_root, &[]));
        for j in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[j][0] ^= 16;
            assert!(!verify_consistency(old, new, &old_root, &new_root, &wrong));
        }
        let mut longer = proof.clone();
        longer.push(*proof.last().unwrap());
        assert!(!verify_consistency(old, new, &old_root, &new_root, &longer));
        assert!(!verify_consistency(
            old,
            new,
            &old_root,
            &new_root,
            &proof[..proof.len() - 1]
        ));
        let mut front = vec![proof[0]];
        front.extend_from_slice(&proof);
        assert!(!verify_consistency(old, new, &old_root, &new_root, &front));
    }
}

#[test]
fn trivial_consistency_cases_follow_the_reference() {
    // `VerifyConsistencyProof`: snapshots that are always consistent, time travel, empty proof.
    let a = h(CT_ROOTS[0]);
    let e = h(CT_EMPTY);
    assert!(verify_consistency(0, 0, &e, &e, &[]));
    assert!(verify_consistency(0, 1, &e, &a, &[]));
    assert!(verify_consistency(1, 1, &a, &a, &[]));
    assert!(!verify_consistency(1, 0, &a, &e, &[]));
    assert!(!verify_consistency(2, 1, &a, &e, &[]));
    assert!(!verify_consistency(1, 2, &a, &e, &[]));
    assert!(!verify_consistency(1, 1, &e, &a, &[]));
    assert!(!verify_consistency(0, 1, &e, &e, &[e]));
    assert!(!verify_consistency(1, 1, &e, &e, &[e]));
}

#[test]
fn node_hash_is_prefixed_sha256() {
    // The root of the two-leaf reference tree is node(leaf(""), leaf(00)).
    let leaves = ct_leaves();
    assert_eq!(
        node_hash(&leaf_hash(&leaves[0]), &leaf_hash(&leaves[1])),
        h(CT_ROOTS[1])
    );
}

/// 32-byte leaves like the ledger's record hashes.
fn hash_leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| metaloop_ledger::merkle::leaf_hash(&(i as u64).to_be_bytes()))
        .collect()
}

#[test]
fn every_leaf_of_every_tree_up_to_64_has_a_proof_to_the_scratch_root() {
    let leaves = hash_leaves(64);
    for size in 1..=64u64 {
        let root = root(&leaves[..size as usize]);
        for index in 0..size {
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            assert!(proof.len() <= 6);
            assert!(
                verify_inclusion(&leaves[index as usize], index, size, &proof, &root),
                "leaf {index} of {size}"
            );
            // Not a proof of any other leaf at this position, nor of this leaf elsewhere.
            let other = &leaves[((index + 1) % size) as usize];
            if size > 1 {
                assert!(!verify_inclusion(other, index, size, &proof, &root));
                assert!(!verify_inclusion(
                    &leaves[index as usize],
                    (index + 1) % size,
                    size,
                    &proof,
                    &root
                ));
            }
        }
        assert_eq!(
            inclusion_proof(&leaves, size, size).unwrap_err(),
            MerkleError::IndexOutOfRange {
                index: size,
                tree_size: size
            }
        );
    }
}

proptest! {
    #[test]
    fn a_flipped_bit_breaks_the_proof(
        size in 1..200u64,
        index_seed in any::<u64>(),
        target_seed in any::<u64>(),
        bit in 0..256usize,
    ) {
        let leaves = hash_leaves(size as usize);
        let index = index_seed % size;
        let root = root(&leaves);
        let proof = inclusion_proof(&leaves, index, size).unwrap();
        prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root));
        // Flip one bit of the leaf, of a path element, or of the root.
        let targets = proof.len() as u64 + 2;
        let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
        match target_seed % targets {
            0 => {
                let mut leaf = leaves[index as usize];
                leaf[byte] ^= mask;
                prop_assert!(!verify_inclusion(&leaf, index, size, &proof, &root));
            }
            1 => {
                let mut root = root;
                root[byte] ^= mask;
                prop_assert!(!verify_inclusion(&leaves[index as usize], index, size, &proof, &root));
            }
            t => {
                let mut proof = proof.clone();
                proof[(t - 2) as usize][byte] ^= mask;
                prop_assert!(!verify_inclusion(&leaves[index as usize], index, size, &proof, &root));
            }
        }
    }
}
