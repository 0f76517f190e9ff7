//! The node config each devnet member gets: its listen and API addresses, the committee,
//! devnet consensus timeouts, the batch cap, and both chains (with `--lying-rpc`, three RPC
//! URLs and a quorum of two).

use super::{Chain, DevnetArgs};

/// The TOML config of `member` (node key, p2p port, API port) in a committee of `members`,
/// watching `chains`.
pub(super) fn node_config(
    member: &(String, u16, u16),
    members: &[(String, u16, u16)],
    chains: &[&Chain],
    args: &DevnetArgs,
) -> String {
    let (_, p2p, api) = member;
    let mut s = format!(
        "[node]\nmoniker = \"node-{p2p}\"\nlisten = \"/ip4/127.0.0.1/tcp/{p2p}\"\napi = \"127.0.0.1:{api}\"\nheartbeat = \"1s\"\n\n[committee]\nepoch = 1\nmembers = [\n"
    );
    for (k, p, _) in members {
        s.push_str(&format!(
            "  {{ key = \"{k}\", address = \"/ip4/127.0.0.1/tcp/{p}\" }},\n"
        ));
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
    }
    s
}
