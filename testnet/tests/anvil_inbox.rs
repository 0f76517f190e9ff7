//! End to end on real chains (on-chain format v2): two anvil instances, gateway on chain A
//! (routed to the inbox on B), inbox and a recording receiver on chain B, all deployed
//! through alloy. Messages sent on A (default and explicit gas limit) are read back from the
//! gateway's logs, put in a batch, signed 3-of-4 with sigil-crypto, submitted to the inbox on
//! B, delivered, and found recorded by the receiver. The inbox's own views agree with
//! sigil-crypto's leaf, batch digest and rotation digest; a second inbox on the same chain
//! accepts the same signed root but refuses its messages (`WrongInbox`); a Rust-signed key
//! rotation bound to the inbox is accepted. Needs `scripts/setup.sh` (anvil from npm,
//! `forge build` artifacts).

use alloy::primitives::{Address, Bytes, U256};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::encoding::{domain, rotation_domain};
use sigil_crypto::keys::{DealtKeys, trusted_dealer};
use sigil_crypto::signing::sign_local;
use sigil_crypto::{BatchTree, Message, OnchainSignature, batch_digest, rotation_digest};
use sigil_testnet::chain::{
    RecordingReceiver, SigilGateway, SigilInbox, deploy_gateway, deploy_inbox, provider_for,
    set_route, spawn_anvil,
};
use std::collections::BTreeMap;

const CHAIN_A: u64 = 31_001;
const CHAIN_B: u64 = 31_002;

fn sign(
    keys: &DealtKeys,
    digest: alloy::primitives::B256,
    rng: &mut ChaCha20Rng,
) -> SigilInbox::Signature {
    // Members 2, 3, 4.
    let signers: BTreeMap<_, _> = keys
        .key_packages
        .iter()
        .skip(1)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let sig = OnchainSignature::from_frost(
        &sign_local(&signers, &keys.public_key_package, digest, rng).unwrap(),
    )
    .unwrap();
    SigilInbox::Signature {
        rx: sig.rx,
        ry: sig.ry,
        z: sig.z,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_crosses_from_gateway_to_inbox_with_a_frost_attestation() {
    let anvil_a = spawn_anvil(CHAIN_A).unwrap();
    let anvil_b = spawn_anvil(CHAIN_B).unwrap();
    let pa = provider_for(&anvil_a, 0).unwrap();
    let pb = provider_for(&anvil_b, 0).unwrap();
    let admin = anvil_b.addresses()[0];

    let gateway = deploy_gateway(&pa, anvil_a.addresses()[0]).await.unwrap();
    let (inbox, receiver) = deploy_inbox(&pb, admin).await.unwrap();
    set_route(&pa, gateway, CHAIN_B, inbox).await.unwrap();

    // Committee key (3-of-4) registered on the inbox.
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let keys = trusted_dealer(3, 4, &mut rng).unwrap();
    let inbox_c = SigilInbox::new(inbox, &pb);
    inbox_c
        .initialize(1, keys.group_key.x_u256(), keys.group_key.y_u256())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    // `sigil verify --rpc --inbox` reads the key the inbox holds, and only for messages to
    // that chain and inbox.
    let rpc = anvil_b.endpoint();
    let key = sigil_node::verify::inbox_key(&rpc, inbox, 1, CHAIN_B, inbox)
        .await
        .unwrap();
    assert_eq!(key, hex::encode(keys.group_key.compressed()), "keyOf(1)");
    for (epoch, chain, dest, why) in [
        (9, CHAIN_B, inbox, "no key for epoch 9"),
        (1, CHAIN_A, inbox, "not inbox"),
        (1, CHAIN_B, receiver, "not inbox"),
    ] {
        let e = sigil_node::verify::inbox_key(&rpc, inbox, epoch, chain, dest)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }

    // Send two messages on chain A (the default gas limit, then an explicit one); rebuild
    // them from the gateway's logs.
    let gw = SigilGateway::new(gateway, &pa);
    assert_eq!(gw.routes(CHAIN_B).call().await.unwrap(), inbox, "route set");
    let mut messages = Vec::new();
    for (payload, gas_limit) in [
        (&b"hello chain B"[..], None),
        (&b"second"[..], Some(150_000u32)),
    ] {
        let payload = Bytes::copy_from_slice(payload);
        let pending = match gas_limit {
            None => gw.sendMessage_0(CHAIN_B, receiver, payload).send().await,
            Some(g) => gw.sendMessage_1(CHAIN_B, receiver, payload, g).send().await,
        };
        let receipt = pending.unwrap().get_receipt().await.unwrap();
        let log = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<SigilGateway::MessageSent>().ok())
            .unwrap();
        let ev = log.inner.data;
        assert_eq!(ev.destInbox, inbox, "the event names the routed inbox");
        assert_eq!(
            ev.gasLimit,
            gas_limit.unwrap_or(200_000),
            "gas limit in the event"
        );
        let m = Message {
            source_chain_id: ev.sourceChainId,
            source_gateway: log.inner.address,
            nonce: ev.nonce,
            sender: ev.sender,
            dest_chain_id: ev.destChainId,
            dest_inbox: ev.destInbox,
            recipient: ev.recipient,
            gas_limit: ev.gasLimit,
            payload: ev.payload.clone(),
        };
        assert_eq!(
            ev.messageId,
            m.id(),
            "gateway's messageId equals sigil-crypto's"
        );
        messages.push(m);
    }

    // The inbox's views equal sigil-crypto's encodings.
    let as_abi = |m: &Message| SigilInbox::Message::from(m);
    for m in &messages {
        assert_eq!(
            inbox_c.leafOf(as_abi(m)).call().await.unwrap(),
            m.leaf(),
            "v2 leaf"
        );
        assert_eq!(inbox_c.messageIdOf(as_abi(m)).call().await.unwrap(), m.id());
    }
    assert_eq!(
        inbox_c.BATCH_DOMAIN_SEPARATOR().call().await.unwrap(),
        domain().separator(),
        "batch domain (version 2)"
    );
    assert_eq!(
        inbox_c.rotationDomainSeparator().call().await.unwrap(),
        rotation_domain(CHAIN_B, inbox).separator(),
        "rotation domain (chain id and inbox)"
    );

    // Batch, sign with members 2, 3, 4, submit.
    let leaves: Vec<_> = messages.iter().map(Message::leaf).collect();
    let tree = BatchTree::new(&leaves).unwrap();
    let digest = batch_digest(1, 7, tree.root());
    assert_eq!(
        inbox_c.batchDigest(1, 7, tree.root()).call().await.unwrap(),
        digest
    );
    let sig = sign(&keys, digest, &mut rng);
    let submit = inbox_c
        .submitBatch(1, 7, tree.root(), sig.clone())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(submit.status(), "submitBatch succeeded");
    println!("submitBatch gas used on anvil: {}", submit.gas_used);

    // A second inbox on the same chain, same committee: the root is accepted (the batch
    // digest names no inbox) but the messages name the first inbox, so it refuses them.
    let (inbox2, _) = deploy_inbox(&pb, admin).await.unwrap();
    let inbox2_c = SigilInbox::new(inbox2, &pb);
    inbox2_c
        .initialize(1, keys.group_key.x_u256(), keys.group_key.y_u256())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let r = inbox2_c
        .submitBatch(1, 7, tree.root(), sig.clone())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        r.status(),
        "the same signed root is accepted by another inbox"
    );
    let err = inbox2_c
        .deliver(as_abi(&messages[0]), tree.proof(&leaves[0]).unwrap())
        .call()
        .await
        .expect_err("a message naming another inbox must revert");
    let wrong = err
        .as_decoded_error::<SigilInbox::WrongInbox>()
        .expect("reverts WrongInbox");
    assert_eq!((wrong.destChainId, wrong.destInbox), (CHAIN_B, inbox));

    // Deliver the first with a single proof, the second through deliverBatch.
    let proof = tree.proof(&leaves[0]).unwrap();
    let d = inbox_c
        .deliver(as_abi(&messages[0]), proof)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(d.status());
    println!("deliver gas used on anvil: {}", d.gas_used);
    let mp = tree.multiproof(&leaves[1..]).unwrap();
    let ordered: Vec<_> = mp
        .leaves
        .iter()
        .map(|l| as_abi(&messages[leaves.iter().position(|x| x == l).unwrap()]))
        .collect();
    inbox_c
        .deliverBatch(ordered, mp.proof, mp.proof_flags)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    let rec = RecordingReceiver::new(receiver, &pb);
    assert_eq!(rec.count().call().await.unwrap(), U256::from(2));
    for m in &messages {
        assert_eq!(
            rec.timesReceived(alloy::primitives::keccak256(&m.payload))
                .call()
                .await
                .unwrap(),
            U256::from(1)
        );
        assert_eq!(
            inbox_c
                .statusOf(m.source_chain_id, m.source_gateway, m.nonce)
                .call()
                .await
                .unwrap(),
            sigil_node::contracts::STATUS_DELIVERED,
            "Delivered"
        );
        let word = inbox_c
            .processedWord(m.source_chain_id, m.source_gateway, m.nonce >> 8)
            .call()
            .await
            .unwrap();
        assert!(word.bit((m.nonce & 0xff) as usize), "bitmap bit set");
    }

    // A forged signature is refused by the chain.
    let bad = SigilInbox::Signature {
        rx: sig.rx,
        ry: sig.ry,
        z: sig.z ^ U256::from(1),
    };
    // (`call`, not `send`: a failed send would still take a nonce from the provider's cache.)
    let forged = inbox_c.submitBatch(1, 8, tree.root(), bad).call().await;
    assert!(
        forged.is_err(),
        "a tampered signature must revert (gas estimation fails)"
    );

    // Key rotation signed in Rust, bound to this inbox on this chain: the other inbox
    // refuses the same signature, this one accepts it.
    let keys2 = trusted_dealer(3, 4, &mut rng).unwrap();
    let (k1, k2) = (&keys.group_key, &keys2.group_key);
    let rot = rotation_digest(
        CHAIN_B,
        inbox,
        1,
        k1.x(),
        k1.parity(),
        2,
        k2.x(),
        k2.parity(),
    );
    assert_eq!(
        inbox_c
            .rotationDigest(1, k1.x_u256(), k1.parity(), 2, k2.x_u256(), k2.parity())
            .call()
            .await
            .unwrap(),
        rot,
        "rotation digest"
    );
    let rot_sig = sign(&keys, rot, &mut rng);
    let refused = inbox2_c
        .rotateKey(2, k2.x_u256(), k2.y_u256(), rot_sig.clone())
        .call()
        .await;
    assert!(
        refused.is_err(),
        "a rotation signed for one inbox is refused by another"
    );
    let r = inbox_c
        .rotateKey(2, k2.x_u256(), k2.y_u256(), rot_sig)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status(), "rotateKey succeeded");
    assert_eq!(inbox_c.currentEpoch().call().await.unwrap(), 2);
    let _ = Address::ZERO;
}
