//! The node config each devnet member gets: its listen and API addresses, the committee,
//! devnet consensus timeouts, the batch cap, and both chains (with `--lying-rpc`, three RPC
//! URLs and a quorum of two).

use super::{Chain, DevnetArgs};
use std::net::Ipv4Addr;

/// The TOML config of `member` (node key, p2p port, API port) on host `host`, dialled at
/// `address`, in a committee of `members` dialled at `addresses` (index-aligned), watching
/// `chains`. Off loopback (`--netns`) the member listens on 0.0.0.0 and advertises
/// `address`.
pub(super) fn node_config(
    (member, host, address): (&(String, u16, u16), Ipv4Addr, &str),
    members: &[(String, u16, u16)],
    addresses: &[String],
    chains: &[&Chain],
    args: &DevnetArgs,
) -> String {
    let (_, p2p, api) = member;
    let listen = match host.is_loopback() {
        true => format!("listen = \"/ip4/{host}/tcp/{p2p}\""),
        false => format!("listen = \"/ip4/0.0.0.0/tcp/{p2p}\"\nadvertise = \"{address}\""),
    };
    let mut s = format!(
        "[node]\nmoniker = \"node-{p2p}\"\n{listen}\napi = \"{host}:{api}\"\nheartbeat = \"1s\"\n\n[committee]\nepoch = 1\nmembers = [\n"
    );
    for ((k, _, _), a) in members.iter().zip(addresses) {
        s.push_str(&format!("  {{ key = \"{k}\", address = \"{a}\" }},\n"));
    }
    // The admin API (`sigil admin`, `--pause-check`), on a free loopback port.
    let admin = super::free_port().unwrap_or(0);
    s.push_str(&format!(
        "]\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[consensus]\npropose_timeout = \"1s\"\nprevote_timeout = \"500ms\"\nprecommit_timeout = \"500ms\"\ntimeout_delta = \"500ms\"\nobservation_wait = \"2s\"\n\n[batch]\nmax_messages = {}\nmax_bytes = 8388608\n\n[signing]\nnonce_pool = 16\nshare_timeout = \"2s\"\n",
        args.batch
    ));
    for (i, c) in chains.iter().enumerate() {
        s.push_str(&format!(
            "\n[[chains]]\nname = \"{}\"\nchain_id = {}\nrpc = [{}]\nrpc_quorum = {}\ngateway = \"{}\"\ninbox = \"{}\"\nfinality = \"confirmations:{}\"\npoll_interval = \"{}ms\"\n",
            if i == 0 { "a" } else { "b" },
            c.id,
            c.rpcs
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", "),
            c.rpcs.len() / 2 + 1,
            c.gateway,
            c.inbox,
            args.confirmations,
            args.poll_ms
        ));
        // New heads by subscription (anvil serves WebSocket on its HTTP port); not from a
        // member's own network namespace, which reaches the chains only through the proxy.
        if !args.no_ws && !args.netns {
            s.push_str(&format!(
                "ws = \"{}\"\n",
                c.anvil.endpoint().replacen("http", "ws", 1)
            ));
        }
    }
    s
}
