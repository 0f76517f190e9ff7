//! `--netns`: every member on a host of its own. Each member gets a Linux network namespace
//! with one veth link to a bridge in the devnet's namespace and an address of its own on a
//! private /24 (10.77.X.0/24, X from the devnet's pid); `--latency-ms N` adds N ms of
//! `tc netem` delay to each member's outgoing packets (so N ms one way between members, 2N
//! round trip, N to the chains), or, on a kernel without `sch_netem`, members are dialled
//! through delay proxies on the bridge (`crate::delayproxy`: N ms each way between
//! members, none to the chains). Members listen on 0.0.0.0 and advertise their own address
//! (`[node] advertise`), so the committee list names addresses other than the listen one.
//! The chains stay in the devnet's namespace, reached through a forwarding proxy on the
//! bridge address. Every `sigil` command for a member's home runs inside its namespace
//! (`ip netns exec`). Everything is removed when the run ends (also on failure).
//! Needs root (CAP_NET_ADMIN) and iproute2; the check `available()` says why not.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Member homes → the namespace their `sigil` commands run in.
static NAMESPACE_OF: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());

/// The namespace `home`'s commands run in, if any.
pub(super) fn namespace_of(home: &Path) -> Option<String> {
    NAMESPACE_OF.lock().ok()?.get(home).cloned()
}

fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether this machine lets the devnet create namespaces; else why not.
pub fn available() -> std::result::Result<(), String> {
    let probe = format!("sigil-probe-{}", std::process::id());
    ip(&["netns", "add", &probe]).map_err(|e| format!("{e:#}"))?;
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}

/// The namespaces, veth links and bridge of one run (removed on drop).
pub(super) struct Netns {
    bridge: String,
    /// Whether `tc netem` added the latency (false: none asked, or no `sch_netem`).
    netem: bool,
    subnet: u8,
    namespaces: Vec<String>,
}

impl Netns {
    /// Creates one namespace per home in `homes` (member i + 1 is `homes[i]`), each linked to
    /// the bridge, with `latency_ms` of netem delay on its outgoing packets. Errors: any
    /// `ip`/`tc` command failing (what is already made is removed).
    pub(super) fn create(homes: &[PathBuf], latency_ms: u64) -> Result<Self> {
        let tag = std::process::id() % 100_000;
        let mut n = Self {
            netem: false,
            bridge: format!("sgbr{tag}"),
            subnet: (tag % 250) as u8,
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &n.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", n.gateway()),
            "dev",
            &n.bridge,
        ])?;
        ip(&["link", "set", &n.bridge, "up"])?;
        for (i, home) in homes.iter().enumerate() {
            let ns = format!("sigil-{tag}-m{}", i + 1);
            ip(&["netns", "add", &ns])?;
            n.namespaces.push(ns.clone());
            let (outer, inner) = (format!("sgv{tag}-{}", i + 1), format!("sgi{tag}-{}", i + 1));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &outer, "master", &n.bridge, "up"])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            let host = n.host(i as u16 + 1);
            for args in [
                vec!["link", "set", "lo", "up"],
                vec!["link", "set", &inner, "name", "eth0"],
                vec!["addr", "add", &format!("{host}/24")[..], "dev", "eth0"],
                vec!["link", "set", "eth0", "up"],
            ] {
                let mut full = vec!["-n", &ns[..]];
                full.extend(args);
                ip(&full)?;
            }
            if latency_ms > 0 && (i == 0 || n.netem) {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0"])
                    .args(["root", "netem", "delay", &format!("{latency_ms}ms")])
                    .output()
                    .context("running tc")?;
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    n.netem = true;
                } else if !err.contains("qdisc kind is unknown") {
                    bail!("tc netem in {ns}: {}", err.trim());
                }
            }
            if let Ok(mut m) = NAMESPACE_OF.lock() {
                m.insert(home.clone(), ns);
            }
        }
        Ok(n)
    }

    /// The bridge's address (the devnet's side: the chains' proxies listen here).
    pub(super) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// Member `i`'s address (1-based).
    pub(super) fn host(&self, i: u16) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 10 + i as u8)
    }

    /// Whether `tc netem` adds the latency (else the devnet puts delay proxies in front of
    /// the members).
    pub(super) fn netem(&self) -> bool {
        self.netem
    }

    /// Namespaces made (one per member).
    pub(super) fn count(&self) -> usize {
        self.namespaces.len()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(mut m) = NAMESPACE_OF.lock() {
            m.retain(|_, ns| !self.namespaces.contains(ns));
        }
        for ns in &self.namespaces {
            // Deleting the namespace deletes its veth end, and with it the pair.
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
