//! Cross-language check: the batch tree equals OpenZeppelin's `StandardMerkleTree` from the
//! npm package `@openzeppelin/merkle-tree` (leaves, root, every proof, a multiproof) on
//! generated messages. Needs `node` and the pinned npm packages (`scripts/setup.sh`).

use alloy_primitives::{Address, B256, Bytes, keccak256};
use proptest::prelude::*;
use serde_json::{Value, json};
use sigil_crypto::merkle::{process_multiproof, process_proof};
use sigil_crypto::{BatchTree, Message};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    // Read at run time: clones share one target dir (see scripts/env.sh).
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("..")
}

fn oz(messages: &[Message], multi: &[usize]) -> Value {
    let script = repo().join("scripts/oz-merkle.js");
    assert!(
        repo()
            .join("node_modules/@openzeppelin/merkle-tree")
            .exists(),
        "@openzeppelin/merkle-tree is not installed; run scripts/setup.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!([
                m.source_chain_id.to_string(),
                m.source_gateway,
                m.nonce.to_string(),
                m.sender,
                m.dest_chain_id.to_string(),
                m.dest_inbox,
                m.recipient,
                m.gas_limit.to_string(),
                keccak256(&m.payload)
            ])
        })
        .collect();
    let input = dir.path().join("in.json");
    let output = dir.path().join("out.json");
    std::fs::write(
        &input,
        json!({ "values": values, "multi": multi }).to_string(),
    )
    .unwrap();
    let status = Command::new("node")
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .status()
        .expect("node must be installed");
    assert!(status.success(), "oz-merkle.js failed");
    serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap()
}

fn h(v: &Value) -> B256 {
    v.as_str().unwrap().parse().unwrap()
}

fn messages(n: usize, salt: u64) -> Vec<Message> {
    (0..n as u64)
        .map(|i| Message {
            source_chain_id: 1 + salt % 5,
            source_gateway: Address::from_word(keccak256(salt.to_be_bytes())),
            nonce: i * 3 + salt,
            sender: Address::from_word(keccak256((i ^ salt).to_be_bytes())),
            dest_chain_id: 31337,
            dest_inbox: Address::from_word(keccak256((salt ^ 0x51b0).to_be_bytes())),
            recipient: Address::repeat_byte(0x51),
            gas_limit: 10_000 + (i as u32 % 7) * 1_000_000,
            payload: Bytes::from(format!("payload {i} {salt}").into_bytes()),
        })
        .collect()
}

fn check(n: usize, salt: u64, multi: Vec<usize>) {
    let msgs = messages(n, salt);
    let js = oz(&msgs, &multi);
    let leaves: Vec<B256> = msgs.iter().map(Message::leaf).collect();
    for (i, l) in leaves.iter().enumerate() {
        assert_eq!(
            *l,
            h(&js["leaves"][i]),
            "leaf {i} differs from OpenZeppelin"
        );
    }
    let tree = BatchTree::new(&leaves).unwrap();
    assert_eq!(
        tree.root(),
        h(&js["root"]),
        "root differs from OpenZeppelin (n = {n})"
    );
    for (i, l) in leaves.iter().enumerate() {
        let ours = tree.proof(l).unwrap();
        let theirs: Vec<B256> = js["proofs"][i].as_array().unwrap().iter().map(h).collect();
        assert_eq!(ours, theirs, "proof {i} differs");
        assert_eq!(process_proof(l, &ours), tree.root());
    }
    let chosen: Vec<B256> = multi.iter().map(|&i| leaves[i]).collect();
    let mp = tree.multiproof(&chosen).unwrap();
    let jm = &js["multi"];
    assert_eq!(
        mp.leaves,
        jm["leaves"]
            .as_array()
            .unwrap()
            .iter()
            .map(h)
            .collect::<Vec<_>>(),
        "multiproof leaf order"
    );
    assert_eq!(
        mp.proof,
        jm["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(h)
            .collect::<Vec<_>>(),
        "multiproof hashes"
    );
    assert_eq!(
        mp.proof_flags,
        jm["proofFlags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect::<Vec<_>>(),
        "multiproof flags"
    );
    assert_eq!(process_multiproof(&mp), Some(tree.root()));
}

#[test]
fn matches_openzeppelin_on_edge_sizes() {
    check(1, 0, vec![0]);
    check(2, 1, vec![1]);
    check(3, 2, vec![0, 2]);
    check(7, 3, vec![6, 0, 3]);
    check(64, 4, (0..64).collect());
    check(1000, 5, vec![999, 1, 500, 501, 37]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn matches_openzeppelin_on_generated_batches(n in 1usize..130, salt in any::<u64>(), picks in proptest::collection::btree_set(0usize..130, 1..10)) {
        let multi: Vec<usize> = picks.into_iter().filter(|&i| i < n).collect();
        let multi = if multi.is_empty() { vec![0] } else { multi };
        check(n, salt, multi);
    }
}
