//! On-chain encodings fixed by DESIGN.md "On-chain formats": message id, Merkle leaf and the
//! EIP-712 digests the committee signs. Each function equals, byte for byte, the Solidity
//! expression named in its doc (`SigilInbox.messageIdOf`, `leafOf`, `batchDigest`,
//! `rotationDigest`).

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, SolValue, eip712_domain, sol};

sol! {
    /// EIP-712 struct signed once per decided batch: `Batch(uint64 epoch,uint64 height,bytes32 root)`.
    struct Batch {
        uint64 epoch;
        uint64 height;
        bytes32 root;
    }

    /// EIP-712 struct the current group key signs to hand over to a new one.
    struct KeyRotation {
        uint64 newEpoch;
        uint256 keyX;
        uint8 keyParity;
    }
}

/// The EIP-712 domain `{name: "Sigil", version: "1"}`; deliberately without chainId or
/// verifying contract, so one attestation serves every destination chain.
pub fn domain() -> Eip712Domain {
    eip712_domain! { name: "Sigil", version: "1", }
}

/// One cross-chain message as `SigilGateway.MessageSent` emits it.
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
    /// The receiving contract on the destination chain.
    pub recipient: Address,
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
    /// sender, destChainId, recipient, keccak256(payload)))))`.
    pub fn leaf(&self) -> B256 {
        let inner = (
            U256::from(self.source_chain_id),
            self.source_gateway,
            U256::from(self.nonce),
            self.sender,
            U256::from(self.dest_chain_id),
            self.recipient,
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
/// committee's FROST signature signs and `SigilInbox.submitBatch` verifies.
pub fn batch_digest(epoch: u64, height: u64, root: B256) -> B256 {
    Batch {
        epoch,
        height,
        root,
    }
    .eip712_signing_hash(&domain())
}

/// The EIP-712 digest of `KeyRotation(newEpoch, keyX, keyParity)` under [`domain`]
/// (32 bytes), signed by the current group key in `SigilInbox.rotateKey`.
pub fn rotation_digest(new_epoch: u64, key_x: B256, key_parity: u8) -> B256 {
    KeyRotation {
        newEpoch: new_epoch,
        keyX: U256::from_be_bytes(key_x.0),
        keyParity: key_parity,
    }
    .eip712_signing_hash(&domain())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn domain_separator_matches_manual_encoding() {
        let type_hash = keccak256("EIP712Domain(string name,string version)");
        let manual = keccak256((type_hash, keccak256("Sigil"), keccak256("1")).abi_encode_params());
        assert_eq!(domain().separator(), manual);
    }

    #[test]
    fn batch_digest_matches_manual_encoding() {
        let root = keccak256("root");
        let th = keccak256("Batch(uint64 epoch,uint64 height,bytes32 root)");
        let sh = keccak256((th, U256::from(3u64), U256::from(9u64), root).abi_encode_params());
        let mut pre = vec![0x19, 0x01];
        pre.extend_from_slice(domain().separator().as_slice());
        pre.extend_from_slice(sh.as_slice());
        assert_eq!(batch_digest(3, 9, root), keccak256(pre));
        assert_ne!(batch_digest(3, 10, root), batch_digest(3, 9, root));
    }

    #[test]
    fn leaf_and_id_depend_on_every_field() {
        let m = Message {
            source_chain_id: 31337,
            source_gateway: address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            nonce: 7,
            sender: address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            dest_chain_id: 31338,
            recipient: address!("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
            payload: Bytes::from_static(b"hello"),
        };
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
        for v in variants {
            assert_ne!(v.leaf(), base_leaf);
        }
        assert_eq!(m.id(), message_id(31337, m.source_gateway, 7));
        assert_ne!(m.id(), base_leaf);
    }
}
