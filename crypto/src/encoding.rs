//! On-chain encodings of format v2 (contracts/V2.md; ARCHITECTURE.md "On-chain formats"):
//! message id, Merkle leaf and the EIP-712 digests the committee signs. Each function equals,
//! byte for byte, the Solidity expression named in its doc (`SigilInbox.messageIdOf`,
//! `leafOf`, `batchDigest`, `rotationDigest`).

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, SolValue, eip712_domain, sol};

sol! {
    /// EIP-712 struct signed once per decided batch: `Batch(uint64 epoch,uint64 height,bytes32 root)`.
    struct Batch {
        uint64 epoch;
        uint64 height;
        bytes32 root;
    }

    /// EIP-712 struct the current (old) group key signs to hand over to a new one:
    /// `KeyRotation(uint64 oldEpoch,uint256 oldKeyX,uint8 oldKeyParity,uint64 newEpoch,uint256 newKeyX,uint8 newKeyParity)`.
    struct KeyRotation {
        uint64 oldEpoch;
        uint256 oldKeyX;
        uint8 oldKeyParity;
        uint64 newEpoch;
        uint256 newKeyX;
        uint8 newKeyParity;
    }
}

/// The EIP-712 domain of batch digests, `{name: "Sigil", version: "2"}`; deliberately without
/// chainId or verifying contract, so one attestation serves every destination (each message
/// names its destination chain and inbox instead, and the inbox refuses the others).
pub fn domain() -> Eip712Domain {
    eip712_domain! { name: "Sigil", version: "2", }
}

/// The EIP-712 domain of rotation digests, `{name: "Sigil", version: "2", chainId,
/// verifyingContract: inbox}` (`SigilInbox.rotationDomainSeparator` on chain `chain_id` at
/// address `inbox`): a rotation signature is bound to one inbox on one chain.
pub fn rotation_domain(chain_id: u64, inbox: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Sigil",
        version: "2",
        chain_id: chain_id,
        verifying_contract: inbox,
    }
}

/// One cross-chain message as `SigilGateway.MessageSent` emits it, fields in the order of the
/// Solidity struct `SigilInbox.Message` (`sourceChainId, sourceGateway, nonce, sender,
/// destChainId, destInbox, recipient, gasLimit, payload`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// EIP-155 id of the source chain.
    pub source_chain_id: u64,
    /// The `SigilGateway` that emitted the message.
    pub source_gateway: Address,
    /// The gateway's per-message sequence number (gap-free from 0).
    pub nonce: u64,
    /// The account that called `sendMessage`.
    pub sender: Address,
    /// EIP-155 id of the destination chain.
    pub dest_chain_id: u64,
    /// The `SigilInbox` on the destination chain that alone may deliver the message (the
    /// gateway's route for `dest_chain_id` at send time).
    pub dest_inbox: Address,
    /// The receiving contract on the destination chain.
    pub recipient: Address,
    /// Gas the inbox calls the recipient with (chosen by the sender; default 200,000).
    pub gas_limit: u32,
    /// Application bytes (at most 64 KiB on the gateway).
    pub payload: Bytes,
}

impl Message {
    /// `keccak256(abi.encode(sourceChainId, sourceGateway, nonce))` (32 bytes).
    pub fn id(&self) -> B256 {
        message_id(self.source_chain_id, self.source_gateway, self.nonce)
    }

    /// The Merkle leaf, OpenZeppelin StandardMerkleTree style (double keccak256):
    /// `keccak256(bytes.concat(keccak256(abi.encode(sourceChainId, sourceGateway, nonce,
    /// sender, destChainId, destInbox, recipient, gasLimit, keccak256(payload)))))` — nine
    /// 32-byte words.
    pub fn leaf(&self) -> B256 {
        let inner = (
            U256::from(self.source_chain_id),
            self.source_gateway,
            U256::from(self.nonce),
            self.sender,
            U256::from(self.dest_chain_id),
            self.dest_inbox,
            self.recipient,
            U256::from(self.gas_limit),
            keccak256(&self.payload),
        )
            .abi_encode_params();
        keccak256(keccak256(inner))
    }
}

/// `keccak256(abi.encode(sourceChainId, sourceGateway, nonce))` (32 bytes).
pub fn message_id(source_chain_id: u64, source_gateway: Address, nonce: u64) -> B256 {
    keccak256(
        (
            U256::from(source_chain_id),
            source_gateway,
            U256::from(nonce),
        )
            .abi_encode_params(),
    )
}

/// The EIP-712 digest of `Batch(epoch, height, root)` under [`domain`] (32 bytes): what the
/// committee's FROST signature signs and `SigilInbox.submitBatch` verifies
/// (`SigilInbox.batchDigest`).
pub fn batch_digest(epoch: u64, height: u64, root: B256) -> B256 {
    Batch {
        epoch,
        height,
        root,
    }
    .eip712_signing_hash(&domain())
}

/// The EIP-712 digest of `KeyRotation(oldEpoch, oldKeyX, oldKeyParity, newEpoch, newKeyX,
/// newKeyParity)` under [`rotation_domain`]`(chain_id, inbox)` (32 bytes): what the old group
/// key signs for `SigilInbox.rotateKey` on the inbox at `inbox` on chain `chain_id`
/// (`SigilInbox.rotationDigest` there). The committee signs one per destination inbox.
#[allow(clippy::too_many_arguments)]
pub fn rotation_digest(
    chain_id: u64,
    inbox: Address,
    old_epoch: u64,
    old_key_x: B256,
    old_key_parity: u8,
    new_epoch: u64,
    new_key_x: B256,
    new_key_parity: u8,
) -> B256 {
    KeyRotation {
        oldEpoch: old_epoch,
        oldKeyX: U256::from_be_bytes(old_key_x.0),
        oldKeyParity: old_key_parity,
        newEpoch: new_epoch,
        newKeyX: U256::from_be_bytes(new_key_x.0),
        newKeyParity: new_key_parity,
    }
    .eip712_signing_hash(&rotation_domain(chain_id, inbox))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    fn eip712(separator: B256, struct_hash: B256) -> B256 {
        let mut pre = vec![0x19, 0x01];
        pre.extend_from_slice(separator.as_slice());
        pre.extend_from_slice(struct_hash.as_slice());
        keccak256(pre)
    }

    fn sample() -> Message {
        Message {
            source_chain_id: 31337,
            source_gateway: address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            nonce: 7,
            sender: address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            dest_chain_id: 31338,
            dest_inbox: address!("0x00000000000000000000000000000000000051B0"),
            recipient: address!("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
            gas_limit: 200_000,
            payload: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn domain_separator_matches_manual_encoding() {
        let type_hash = keccak256("EIP712Domain(string name,string version)");
        let manual = keccak256((type_hash, keccak256("Sigil"), keccak256("2")).abi_encode_params());
        assert_eq!(domain().separator(), manual);
    }

    #[test]
    fn batch_digest_matches_manual_encoding() {
        let root = keccak256("root");
        let th = keccak256("Batch(uint64 epoch,uint64 height,bytes32 root)");
        let sh = keccak256((th, U256::from(3u64), U256::from(9u64), root).abi_encode_params());
        assert_eq!(batch_digest(3, 9, root), eip712(domain().separator(), sh));
        assert_ne!(batch_digest(3, 10, root), batch_digest(3, 9, root));
    }

    #[test]
    fn rotation_digest_matches_manual_encoding_and_binds_the_inbox() {
        let inbox = address!("0x00000000000000000000000000000000000051B0");
        let dom_th = keccak256(
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
        );
        let sep = keccak256(
            (
                dom_th,
                keccak256("Sigil"),
                keccak256("2"),
                U256::from(31337u64),
                inbox,
            )
                .abi_encode_params(),
        );
        assert_eq!(rotation_domain(31337, inbox).separator(), sep);
        let th = keccak256(
            "KeyRotation(uint64 oldEpoch,uint256 oldKeyX,uint8 oldKeyParity,uint64 newEpoch,uint256 newKeyX,uint8 newKeyParity)",
        );
        let (old_x, new_x) = (keccak256("old key x"), keccak256("new key x"));
        let sh = keccak256(
            (
                th,
                U256::from(1u64),
                old_x,
                U256::from(0u8),
                U256::from(2u64),
                new_x,
                U256::from(1u8),
            )
                .abi_encode_params(),
        );
        let d = rotation_digest(31337, inbox, 1, old_x, 0, 2, new_x, 1);
        assert_eq!(d, eip712(sep, sh));
        // Another chain, another inbox, or another old key: another digest.
        assert_ne!(rotation_digest(31338, inbox, 1, old_x, 0, 2, new_x, 1), d);
        assert_ne!(
            rotation_digest(31337, Address::repeat_byte(1), 1, old_x, 0, 2, new_x, 1),
            d
        );
        assert_ne!(rotation_digest(31337, inbox, 1, new_x, 0, 2, new_x, 1), d);
        assert_ne!(rotation_digest(31337, inbox, 1, old_x, 1, 2, new_x, 1), d);
    }

    #[test]
    fn leaf_is_the_double_hash_of_nine_words() {
        let m = sample();
        let mut words = Vec::new();
        for w in [
            U256::from(m.source_chain_id).to_be_bytes::<32>(),
            m.source_gateway.into_word().0,
            U256::from(m.nonce).to_be_bytes::<32>(),
            m.sender.into_word().0,
            U256::from(m.dest_chain_id).to_be_bytes::<32>(),
            m.dest_inbox.into_word().0,
            m.recipient.into_word().0,
            U256::from(m.gas_limit).to_be_bytes::<32>(),
            keccak256(&m.payload).0,
        ] {
            words.extend_from_slice(&w);
        }
        assert_eq!(words.len(), 288);
        assert_eq!(m.leaf(), keccak256(keccak256(&words)));
    }

    #[test]
    fn leaf_and_id_depend_on_every_field() {
        let m = sample();
        let base_leaf = m.leaf();
        let mut variants = Vec::new();
        let mut v = m.clone();
        v.nonce = 8;
        variants.push(v);
        let mut v = m.clone();
        v.payload = Bytes::from_static(b"hellp");
        variants.push(v);
        let mut v = m.clone();
        v.dest_chain_id = 1;
        variants.push(v);
        let mut v = m.clone();
        v.dest_inbox = Address::repeat_byte(0xbb);
        variants.push(v);
        let mut v = m.clone();
        v.gas_limit = 200_001;
        variants.push(v);
        let mut v = m.clone();
        v.recipient = Address::repeat_byte(0xcc);
        variants.push(v);
        let mut v = m.clone();
        v.sender = Address::repeat_byte(0xdd);
        variants.push(v);
        for v in variants {
            assert_ne!(v.leaf(), base_leaf);
        }
        assert_eq!(m.id(), message_id(31337, m.source_gateway, 7));
        assert_ne!(m.id(), base_leaf);
    }

    #[test]
    fn json_names_the_new_fields() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["destInbox"], "0x00000000000000000000000000000000000051b0");
        assert_eq!(v["gasLimit"], 200_000);
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }
}
