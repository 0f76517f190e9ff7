//! Node identity: one secp256k1 key per member signs consensus envelopes (ECDSA, RFC 6979)
//! and is the libp2p identity (so a member's peer id follows from the committee list).
//! Envelope signatures: `ECDSA-secp256k1(SHA-256(ENVELOPE_DOMAIN || body))`, 64 bytes r||s.

use k256::ecdsa::{SigningKey, VerifyingKey};
use libp2p::PeerId;
use sigil_proto as pb;
use zeroize::Zeroizing;

pub use sigil_engine::envelope::ENVELOPE_DOMAIN;

/// Errors from keys and envelopes.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Not a valid key encoding.
    #[error("invalid key: {0}")]
    Key(String),
    /// An envelope's member index is outside the committee.
    #[error("member {0} is not in the committee")]
    UnknownMember(u32),
    /// Bad signature.
    #[error("bad envelope signature from member {0}")]
    BadSignature(u32),
}

/// Parses a 33-byte compressed secp256k1 public key from hex (with or without `0x`).
/// Errors: [`IdentityError::Key`].
pub fn public_key_from_hex(s: &str) -> Result<VerifyingKey, IdentityError> {
    let bytes =
        hex::decode(s.trim_start_matches("0x")).map_err(|e| IdentityError::Key(e.to_string()))?;
    if bytes.len() != 33 {
        return Err(IdentityError::Key(format!(
            "{} bytes, want 33",
            bytes.len()
        )));
    }
    VerifyingKey::from_sec1_bytes(&bytes).map_err(|e| IdentityError::Key(e.to_string()))
}

/// The compressed (33-byte) hex of a public key.
pub fn public_key_hex(k: &VerifyingKey) -> String {
    hex::encode(k.to_encoded_point(true).as_bytes())
}

/// The libp2p peer id of a member's node key.
/// Errors: [`IdentityError::Key`] (cannot happen for a valid [`VerifyingKey`]).
pub fn peer_id(k: &VerifyingKey) -> Result<PeerId, IdentityError> {
    let pk =
        libp2p::identity::secp256k1::PublicKey::try_from_bytes(k.to_encoded_point(true).as_bytes())
            .map_err(|e| IdentityError::Key(e.to_string()))?;
    Ok(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

/// This node's secret key.
#[derive(Clone)]
pub struct NodeKey {
    key: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", public_key_hex(self.key.verifying_key()))
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::random(&mut rand_core::OsRng),
        }
    }

    /// From 32 secret bytes. Errors: [`IdentityError::Key`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, IdentityError> {
        SigningKey::from_slice(b)
            .map(|key| Self { key })
            .map_err(|e| IdentityError::Key(e.to_string()))
    }

    /// The 32 secret bytes (zeroized on drop).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.to_bytes().to_vec())
    }

    /// Public key.
    pub fn public(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// The libp2p keypair for this key. Errors: [`IdentityError::Key`].
    pub fn libp2p_keypair(&self) -> Result<libp2p::identity::Keypair, IdentityError> {
        let mut bytes = self.key.to_bytes().to_vec();
        let sk = libp2p::identity::secp256k1::SecretKey::try_from_bytes(&mut bytes)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        Ok(libp2p::identity::secp256k1::Keypair::from(sk).into())
    }

    /// Signs `body` as member `member` ([`sigil_engine::envelope::seal`]).
    pub fn seal(&self, member: u16, body: &pb::Body) -> pb::Envelope {
        sigil_engine::envelope::seal(&self.key, member, body)
    }

    /// The secp256k1 signing key (the engine seals its own envelopes with it).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// The committee's public keys, member index i (1-based) at position i-1.
#[derive(Debug, Clone)]
pub struct Committee {
    keys: Vec<VerifyingKey>,
    peers: Vec<PeerId>,
    engine: sigil_engine::Committee,
}

impl Committee {
    /// From the configured key list. Errors: [`IdentityError::Key`].
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, IdentityError> {
        let peers = keys.iter().map(peer_id).collect::<Result<_, _>>()?;
        let engine = sigil_engine::Committee::new(keys.clone());
        Ok(Self {
            keys,
            peers,
            engine,
        })
    }

    /// The committee listed in config (`committee.members[*].key`, in order).
    /// Errors: [`IdentityError::Key`] for a key that is not a compressed secp256k1 point.
    pub fn from_config(section: &crate::config::CommitteeSection) -> Result<Self, IdentityError> {
        let keys = section
            .members
            .iter()
            .map(|m| public_key_from_hex(&m.key))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// Number of members n.
    pub fn len(&self) -> u16 {
        self.keys.len() as u16
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Index (1-based) of a key, if a member.
    pub fn index_of(&self, k: &VerifyingKey) -> Option<u16> {
        self.keys.iter().position(|x| x == k).map(|i| i as u16 + 1)
    }

    /// The node key of member `i` (1-based).
    pub fn key(&self, i: u16) -> Option<&VerifyingKey> {
        self.keys.get(usize::from(i).checked_sub(1)?)
    }

    /// Index (1-based) of a peer id, if a member.
    pub fn index_of_peer(&self, p: &PeerId) -> Option<u16> {
        self.peers.iter().position(|x| x == p).map(|i| i as u16 + 1)
    }

    /// Peer id of member `i` (1-based).
    pub fn peer(&self, i: u16) -> Option<PeerId> {
        self.peers.get(usize::from(i).checked_sub(1)?).copied()
    }

    /// All member peer ids.
    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    /// The engine's view of the committee (keys only).
    pub fn engine(&self) -> &sigil_engine::Committee {
        &self.engine
    }

    /// Checks an envelope's member and signature and decodes its body
    /// ([`sigil_engine::Committee::open`]).
    /// Errors: [`IdentityError::UnknownMember`], [`IdentityError::BadSignature`] (also for an
    /// undecodable or empty body).
    pub fn open(&self, env: &pb::Envelope) -> Result<(u16, pb::Body), IdentityError> {
        use sigil_engine::EnvelopeError as E;
        self.engine.open(env).map_err(|e| match e {
            E::UnknownMember(m) => IdentityError::UnknownMember(m),
            _ => IdentityError::BadSignature(env.member),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_roundtrip_and_tamper() {
        let a = NodeKey::generate();
        let b = NodeKey::generate();
        let c = Committee::new(vec![a.public(), b.public()]).unwrap();
        let body = pb::Body {
            kind: Some(pb::body::Kind::Vote(pb::Vote {
                kind: 1,
                height: 3,
                round: 0,
                value_id: vec![7; 32],
            })),
        };
        let env = a.seal(1, &body);
        assert_eq!(c.open(&env).unwrap(), (1, body.clone()));
        let mut wrong_member = env.clone();
        wrong_member.member = 2;
        assert!(matches!(
            c.open(&wrong_member),
            Err(IdentityError::BadSignature(2))
        ));
        let mut out = env.clone();
        out.member = 3;
        assert!(matches!(c.open(&out), Err(IdentityError::UnknownMember(3))));
        let mut flipped = env;
        flipped.body[0] ^= 1;
        assert!(c.open(&flipped).is_err());
        assert_eq!(c.index_of_peer(&peer_id(&b.public()).unwrap()), Some(2));
        assert_eq!(
            a.libp2p_keypair().unwrap().public().to_peer_id(),
            peer_id(&a.public()).unwrap()
        );
    }
}
