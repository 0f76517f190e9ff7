//! Generates `contracts/test/fixtures/frost.json` (format v2, contracts/V2.md §11):
//! signatures, encodings and whole inbox scenarios made by this crate, which `forge test`
//! verifies on the Solidity side (`RustFixturesTest`, `RustInboxScenarioTest`, `GasReport`).
//! The test fails when the committed file is stale; `SIGIL_BLESS=1 cargo test -p sigil-crypto
//! --test fixtures` rewrites it. Generation is deterministic (seeded ChaCha20).

use alloy_primitives::{Address, B256, Bytes, U256, address, keccak256};
use alloy_sol_types::SolValue;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use sigil_crypto::keys::{DealtKeys, trusted_dealer};
use sigil_crypto::signing::sign_local;
use sigil_crypto::{BatchTree, GroupKey, Message, OnchainSignature, batch_digest, rotation_digest};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where forge tests etch the recording receiver.
const RECIPIENT: Address = address!("0x00000000000000000000000000000000000051C1");
const SOURCE_GATEWAY: Address = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");
const SENDER: Address = address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const SOURCE_CHAIN: u64 = 1;
/// Foundry's default chain id: the inbox under test lives there.
const DEST_CHAIN: u64 = 31337;
/// Where forge tests place the inbox (deploy, then etch): every scenario message names it.
const DEST_INBOX: Address = address!("0x00000000000000000000000000000000000051B0");
/// Gas limit of every scenario and bench message (the gateway's default).
const GAS_LIMIT: u32 = 200_000;
/// Gas limit of the `encoding` message: distinct from the default, so a swapped field shows.
const ENCODING_GAS_LIMIT: u32 = 123_456;

fn hex32(b: B256) -> String {
    format!("{b}")
}

fn u(x: U256) -> String {
    format!("{:#x}", x)
}

fn sig_json(s: &OnchainSignature) -> Value {
    json!({ "rx": u(s.rx), "ry": u(s.ry), "z": u(s.z) })
}

fn key_json(k: &GroupKey) -> Value {
    json!({ "x": hex32(k.x()), "y": hex32(k.y()), "parity": k.parity() })
}

fn sign(keys: &DealtKeys, t: u16, digest: B256, rng: &mut ChaCha20Rng) -> OnchainSignature {
    // Use the last t members, so signer sets vary from the dealer's first members.
    let signers: BTreeMap<_, _> = keys
        .key_packages
        .iter()
        .rev()
        .take(t as usize)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let sig = sign_local(&signers, &keys.public_key_package, digest, rng).unwrap();
    OnchainSignature::from_frost(&sig).unwrap()
}

/// Bench/inbox message i: nonce i, payload abi.encode(uint256(i)), addressed to the fixture
/// inbox with the default gas limit.
fn message(nonce: u64) -> Message {
    Message {
        source_chain_id: SOURCE_CHAIN,
        source_gateway: SOURCE_GATEWAY,
        nonce,
        sender: SENDER,
        dest_chain_id: DEST_CHAIN,
        dest_inbox: DEST_INBOX,
        recipient: RECIPIENT,
        gas_limit: GAS_LIMIT,
        payload: Bytes::from(U256::from(nonce).abi_encode()),
    }
}

/// A signed batch of messages with nonces `first..first+size`, with every single proof and a
/// multiproof over all of them.
fn batch(
    keys: &DealtKeys,
    t: u16,
    epoch: u64,
    height: u64,
    first: u64,
    size: u64,
    rng: &mut ChaCha20Rng,
) -> Value {
    let msgs: Vec<Message> = (first..first + size).map(message).collect();
    let leaves: Vec<B256> = msgs.iter().map(Message::leaf).collect();
    let tree = BatchTree::new(&leaves).unwrap();
    let digest = batch_digest(epoch, height, tree.root());
    let sig = sign(keys, t, digest, rng);
    let proofs: Vec<Vec<String>> = leaves
        .iter()
        .map(|l| tree.proof(l).unwrap().into_iter().map(hex32).collect())
        .collect();
    let mp = tree.multiproof(&leaves).unwrap();
    let order: Vec<u64> = mp
        .leaves
        .iter()
        .map(|l| first + leaves.iter().position(|x| x == l).unwrap() as u64)
        .collect();
    json!({
        "epoch": epoch, "height": height, "first": first, "size": size,
        "root": hex32(tree.root()), "digest": hex32(digest), "sig": sig_json(&sig),
        "proofs": proofs,
        "multiOrder": order,
        "multiProof": mp.proof.iter().map(|h| hex32(*h)).collect::<Vec<_>>(),
        "multiFlags": mp.proof_flags,
    })
}

fn generate() -> Value {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5161);

    // Signatures of random digests for the committee sizes of the benchmarks.
    let mut signatures = Vec::new();
    for (t, n) in [(3u16, 4u16), (5, 7), (13, 19)] {
        let keys = trusted_dealer(t, n, &mut rng).unwrap();
        let digest = keccak256(format!("sigil fixture {t}-of-{n}"));
        let s = sign(&keys, t, digest, &mut rng);
        signatures.push(json!({ "t": t, "n": n, "key": key_json(&keys.group_key), "digest": hex32(digest), "sig": sig_json(&s) }));
    }

    // Encodings the contracts must reproduce.
    let m = Message {
        payload: Bytes::from_static(b"hello sigil"),
        gas_limit: ENCODING_GAS_LIMIT,
        ..message(42)
    };
    let (old_key_x, new_key_x) = (keccak256("old key x"), keccak256("key x"));
    let encoding = json!({
        "message": {
            "sourceChainId": m.source_chain_id, "sourceGateway": m.source_gateway, "nonce": m.nonce,
            "sender": m.sender, "destChainId": m.dest_chain_id, "destInbox": m.dest_inbox,
            "recipient": m.recipient, "gasLimit": m.gas_limit,
            "payload": format!("{}", m.payload),
        },
        "id": hex32(m.id()),
        "leaf": hex32(m.leaf()),
        "batchDigest": hex32(batch_digest(7, 1234, keccak256("root"))),
        "rotation": {
            "chainId": DEST_CHAIN, "verifyingContract": DEST_INBOX,
            "oldEpoch": 1, "oldKeyX": hex32(old_key_x), "oldKeyParity": 0,
            "newEpoch": 2, "newKeyX": hex32(new_key_x), "newKeyParity": 1,
        },
        "rotationDigest": hex32(rotation_digest(DEST_CHAIN, DEST_INBOX, 1, old_key_x, 0, 2, new_key_x, 1)),
    });

    // Inbox scenario: epoch-1 key, batches, rotation to an epoch-2 key, signed by key 1 for
    // the inbox at DEST_INBOX on DEST_CHAIN (the rotation domain binds both).
    let k1 = trusted_dealer(3, 4, &mut rng).unwrap();
    let k2 = trusted_dealer(3, 4, &mut rng).unwrap();
    let inbox_rotation = rotation_digest(
        DEST_CHAIN,
        DEST_INBOX,
        1,
        k1.group_key.x(),
        k1.group_key.parity(),
        2,
        k2.group_key.x(),
        k2.group_key.parity(),
    );
    let rotation_sig = sign(&k1, 3, inbox_rotation, &mut rng);
    let inbox = json!({
        "key1": key_json(&k1.group_key),
        "key2": key_json(&k2.group_key),
        "rotationDigest": hex32(inbox_rotation),
        "rotationSig": sig_json(&rotation_sig),
        "batchA": batch(&k1, 3, 1, 1, 0, 8, &mut rng),
        "batchB": batch(&k2, 3, 2, 2, 100, 4, &mut rng),
        "batchOld": batch(&k1, 3, 1, 3, 200, 2, &mut rng),
    });

    // Gas benchmark batches (13-of-19 committee: the size the baseline is measured at).
    let kb = trusted_dealer(13, 19, &mut rng).unwrap();
    let bench: Vec<Value> = [1u64, 16, 64, 256]
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            batch(
                &kb,
                13,
                1,
                10 + i as u64,
                1000 * (i as u64 + 1),
                size,
                &mut rng,
            )
        })
        .collect();

    json!({
        "comment": "generated by `SIGIL_BLESS=1 cargo test -p sigil-crypto --test fixtures`; do not edit",
        "recipient": RECIPIENT, "sourceGateway": SOURCE_GATEWAY, "sender": SENDER,
        "sourceChainId": SOURCE_CHAIN, "destChainId": DEST_CHAIN,
        "destInbox": DEST_INBOX, "gasLimit": GAS_LIMIT,
        "signatures": signatures,
        "encoding": encoding,
        "inbox": inbox,
        "benchKey": key_json(&kb.group_key),
        "bench": bench,
    })
}

#[test]
fn fixtures_are_fresh() {
    // Read at run time: clones share one target dir, so a compile-time path could name
    // another clone's file.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = PathBuf::from(manifest).join("../contracts/test/fixtures/frost.json");
    let text = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("SIGIL_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is stale; regenerate with `SIGIL_BLESS=1 cargo test -p sigil-crypto --test fixtures`",
        path.display()
    );
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(generate(), generate());
}
