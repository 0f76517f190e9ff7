//! The libp2p stack: TCP + Noise + Yamux, gossipsub with application validation, one
//! request-response protocol (DKG packages, catch-up sync), identify and ping, and an allow
//! list so that only committee members' peer ids stay connected.

use crate::identity::{Committee, NodeKey};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, gossipsub, identify, noise, ping, request_response,
    tcp, yamux,
};
use sigil_proto::{MAX_ENVELOPE_BYTES, PROTOCOL_VERSION};
use std::time::Duration;

/// Gossip topics, one per message class.
pub mod topics {
    /// Proposals and votes.
    pub const CONSENSUS: &str = "/sigil/1/consensus";
    /// Nonce commitments, shares and signing requests.
    pub const SIGNING: &str = "/sigil/1/signing";
    /// Observation cursors.
    pub const OBSERVATIONS: &str = "/sigil/1/observations";
    /// Heartbeats.
    pub const HEARTBEAT: &str = "/sigil/1/heartbeat";
    /// All of them.
    pub const ALL: [&str; 4] = [CONSENSUS, SIGNING, OBSERVATIONS, HEARTBEAT];
}

/// Opaque protobuf bytes carried by request-response (CBOR byte string).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Wire(#[serde(with = "serde_bytes")] pub Vec<u8>);

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    // The derive generates `BehaviourEvent` (one variant per field, named after it).
    #![allow(missing_docs)]
    use super::*;

    /// The node's network behaviour.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Member-only connection gate.
        pub allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
        /// Gossip.
        pub gossipsub: gossipsub::Behaviour,
        /// Point-to-point requests.
        pub rr: request_response::cbor::Behaviour<Wire, Wire>,
        /// Identify.
        pub identify: identify::Behaviour,
        /// Ping.
        pub ping: ping::Behaviour,
    }
}

/// Builds a swarm for `key`, allowing only `committee` peers, subscribed to every topic.
/// Errors: transport or gossipsub configuration failures.
pub fn build(key: &NodeKey, committee: &Committee) -> anyhow::Result<Swarm<Behaviour>> {
    let keypair = key.libp2p_keypair()?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|k| {
            let gcfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(MAX_ENVELOPE_BYTES + 1024)
                .mesh_n_low(1)
                .mesh_n(3)
                .mesh_n_high(12)
                .mesh_outbound_min(1)
                .flood_publish(true)
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(k.clone()), gcfg)
                    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let proto = StreamProtocol::try_from_owned(format!("/sigil/{PROTOCOL_VERSION}/rr"))?;
            let rr = request_response::cbor::Behaviour::new(
                [(proto, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            Ok(Behaviour {
                allow: allow_block_list::Behaviour::default(),
                gossipsub,
                rr,
                identify: identify::Behaviour::new(identify::Config::new(
                    format!("/sigil/{PROTOCOL_VERSION}"),
                    k.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for p in committee.peers() {
        swarm.behaviour_mut().allow.allow_peer(*p);
    }
    for t in topics::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(t))?;
    }
    Ok(swarm)
}

/// Redial schedule for one member: exponential backoff from 500 ms to 30 s, reset on connect.
#[derive(Debug, Clone)]
pub struct Redial {
    /// Next attempt.
    pub next: std::time::Instant,
    /// Current backoff.
    pub backoff: Duration,
}

impl Redial {
    /// Due now.
    pub fn new() -> Self {
        Self {
            next: std::time::Instant::now(),
            backoff: Duration::from_millis(500),
        }
    }

    /// After a dial: wait the backoff, then double it (cap 30 s).
    pub fn dialed(&mut self) {
        self.next = std::time::Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }

    /// After a connection: reset.
    pub fn reset(&mut self) {
        self.backoff = Duration::from_millis(500);
    }
}

impl Default for Redial {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts listening on `[node] listen` and announces `[node] advertise` (when set) as the
/// external address libp2p identify reports to peers. Errors: an address that does not
/// parse or cannot be listened on.
pub fn listen(
    swarm: &mut Swarm<Behaviour>,
    node: &crate::config::NodeSection,
) -> anyhow::Result<()> {
    swarm.listen_on(node.listen.parse()?)?;
    if let Some(a) = &node.advertise {
        swarm.add_external_address(a.parse()?);
    }
    Ok(())
}
