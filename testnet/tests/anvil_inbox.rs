//! End to end on real chains: two anvil instances, gateway on chain A, inbox and a
//! recording receiver on chain B, all deployed through alloy. A message sent on A is read
//! back from the gateway's log, put in a batch, signed 3-of-4 with sigil-crypto, submitted to
//! the inbox on B, delivered, and found recorded by the receiver. Needs `scripts/setup.sh`
//! (anvil from npm, `forge build` artifacts).

use alloy::primitives::{Address, Bytes, U256};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::keys::trusted_dealer;
use sigil_crypto::signing::sign_local;
use sigil_crypto::{BatchTree, Message, OnchainSignature, batch_digest};
use sigil_testnet::chain::{
    RecordingReceiver, SigilGateway, SigilInbox, deploy_gateway, deploy_inbox, provider_for,
    spawn_anvil,
};
use std::collections::BTreeMap;

const CHAIN_A: u64 = 31_001;
const CHAIN_B: u64 = 31_002;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_crosses_from_gateway_to_inbox_with_a_frost_attestation() {
    let anvil_a = spawn_anvil(CHAIN_A).unwrap();
    let anvil_b = spawn_anvil(CHAIN_B).unwrap();
    let pa = provider_for(&anvil_a, 0).unwrap();
    let pb = provider_for(&anvil_b, 0).unwrap();
    let admin = anvil_b.addresses()[0];

    let gateway = deploy_gateway(&pa).await.unwrap();
    let (inbox, receiver) = deploy_inbox(&pb, admin).await.unwrap();

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

    // Send two messages on chain A; rebuild them from the gateway's logs.
    let gw = SigilGateway::new(gateway, &pa);
    let mut messages = Vec::new();
    for payload in [&b"hello chain B"[..], &b"second"[..]] {
        let receipt = gw
            .sendMessage(CHAIN_B, receiver, Bytes::copy_from_slice(payload))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let log = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<SigilGateway::MessageSent>().ok())
            .unwrap();
        let ev = log.inner.data;
        let m = Message {
            source_chain_id: ev.sourceChainId,
            source_gateway: log.inner.address,
            nonce: ev.nonce,
            sender: ev.sender,
            dest_chain_id: ev.destChainId,
            recipient: ev.recipient,
            payload: ev.payload.clone(),
        };
        assert_eq!(
            ev.messageId,
            m.id(),
            "gateway's messageId equals sigil-crypto's"
        );
        messages.push(m);
    }

    // Batch, sign with members 2, 3, 4, submit.
    let leaves: Vec<_> = messages.iter().map(Message::leaf).collect();
    let tree = BatchTree::new(&leaves).unwrap();
    let digest = batch_digest(1, 7, tree.root());
    let signers: BTreeMap<_, _> = keys
        .key_packages
        .iter()
        .skip(1)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let sig = OnchainSignature::from_frost(
        &sign_local(&signers, &keys.public_key_package, digest, &mut rng).unwrap(),
    )
    .unwrap();
    let submit = inbox_c
        .submitBatch(
            1,
            7,
            tree.root(),
            SigilInbox::Signature {
                rx: sig.rx,
                ry: sig.ry,
                z: sig.z,
            },
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(submit.status(), "submitBatch succeeded");
    println!("submitBatch gas used on anvil: {}", submit.gas_used);

    // Deliver the first with a single proof, the second through deliverBatch.
    let as_abi = |m: &Message| SigilInbox::Message::from(m);
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
            inbox_c.statusOf(m.id()).call().await.unwrap(),
            1,
            "Delivered"
        );
    }

    // A forged signature is refused by the chain.
    let bad = SigilInbox::Signature {
        rx: sig.rx,
        ry: sig.ry,
        z: sig.z ^ U256::from(1),
    };
    let forged = inbox_c.submitBatch(1, 8, tree.root(), bad).send().await;
    assert!(
        forged.is_err(),
        "a tampered signature must revert (gas estimation fails)"
    );
    let _ = Address::ZERO;
}
