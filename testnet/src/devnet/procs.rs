//! The processes the devnet starts (nodes, relayer; the ports they get and the wait for
//! their APIs), and CPU time and peak memory of the processes it
//! started, read from Linux's `/proc`.

use super::{Chain, NodeProc, sigil};
use anyhow::{Result, anyhow, bail};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

/// Starts `sigil relay` in `home` (created) for `nodes`' APIs and both chains' inboxes, with
/// its transaction key in the environment (never on the command line) and `extra`
/// arguments (`--metrics`, `--admin`, ...), logging to `<home>/relayer.log`.
pub(super) fn start_relayer(
    bin: &Path,
    home: &Path,
    nodes: &[NodeProc],
    chains: [&Chain; 2],
    extra: &[&str],
) -> Result<Child> {
    std::fs::create_dir_all(home)?;
    // The second funded account of chain A's anvil (the same on B: one mnemonic).
    let key = hex::encode(chains[0].anvil.keys()[1].to_bytes());
    let mut relay = sigil(bin, home);
    relay.arg("relay").args(extra);
    for n in nodes {
        relay.args(["--api", &n.api]);
    }
    for c in chains {
        relay.args([
            "--chain",
            &format!("{}={}@{}", c.id, c.anvil.endpoint(), c.inbox),
        ]);
    }
    let log = std::fs::File::create(home.join("relayer.log"))?;
    Ok(relay
        .env("SIGIL_RELAYER_KEY", &key)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

pub(super) fn start_node(bin: &Path, home: &Path) -> Result<Child> {
    start_node_with(bin, home, &[])
}

/// `sigil start` with extra arguments (`--join`), logging to `<home>/node.log`.
pub(super) fn start_node_with(bin: &Path, home: &Path, extra: &[&str]) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("node.log"))?;
    Ok(sigil(bin, home)
        .arg("start")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// Gas used by the relayer's mined transactions, summed from its ledger (`path`, JSON lines).
pub(super) fn relayer_gas(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<sigil_node::relayer::TxRecord>(l).ok())
        .map(|r| r.gas_used)
        .sum()
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, fixed at 100 by the
/// Linux ABI on x86-64 and arm64).
const USER_HZ: f64 = 100.0;

/// What one process has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcFigures {
    /// User + system CPU time (s).
    pub cpu_seconds: f64,
    /// Peak resident set size (`VmHWM`, MiB).
    pub peak_rss_mib: f64,
}

/// Reads `pid`'s figures; `None` when the process is gone or `/proc` is unreadable.
pub fn read(pid: u32) -> Option<ProcFigures> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&stat, &status)
}

/// Current resident set size of `pid` (`VmRSS`, MiB); `None` when unreadable.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(status_kb(&status, "VmRSS:")? / 1024.0)
}

/// A `kB` field of `/proc/<pid>/status` (`field` with its colon).
fn status_kb(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Parses `/proc/<pid>/stat` (utime and stime: fields 14 and 15, counted after the
/// parenthesised command name, which may hold spaces) and `/proc/<pid>/status` (`VmHWM`
/// in kB).
fn parse(stat: &str, status: &str) -> Option<ProcFigures> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); utime is field 14.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hwm_kb = status_kb(status, "VmHWM:")?;
    Some(ProcFigures {
        cpu_seconds: (utime + stime) / USER_HZ,
        peak_rss_mib: hwm_kb / 1024.0,
    })
}

/// Waits until every started member's API answers `/healthz` (at most 60 s). Errors: a
/// member whose process exited (with the last line of its `node.log`, e.g. a port already
/// in use), or one that never answered. Without this a member lost at start showed as
/// "running" and the run failed minutes later on messages that were never attested.
pub(super) async fn wait_for_apis(nodes: &mut [NodeProc]) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for n in nodes.iter_mut() {
        loop {
            if let Some(child) = n.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(n.home.join("node.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or("(empty log)");
                bail!("member {} exited at start ({status}): {last}", n.member);
            }
            let url = format!("{}/healthz", n.api.trim_end_matches('/'));
            let up = http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "member {}'s API {} did not answer within 60 s",
                    n.member,
                    n.api
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Lowest port [`free_port`] hands out.
const PORTS_FROM: u16 = 10_000;

/// A loopback TCP port free now, for a process the devnet starts later (seconds later:
/// the DKG runs in between). Drawn at random below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default), never the same twice
/// in one run: a port from `bind(:0)` comes from that range, where any outgoing connection
/// or other `:0` listener may take it before the node binds it. A 19-member run lost a
/// member at start that way ("Address already in use" on its admin port). Falls back to
/// `bind(:0)` when no port below the range is free. Errors: no port at all.
pub(super) fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = low.saturating_sub(PORTS_FROM);
    let mut given = GIVEN.lock().map_err(|_| anyhow!("port list poisoned"))?;
    // A per-process random hasher is the random source (no security role here).
    let random = std::collections::hash_map::RandomState::new();
    for i in 0..(if span > 0 { 500u64 } else { 0 }) {
        let mut h = random.build_hasher();
        h.write_u64(i);
        let port = PORTS_FROM + (h.finish() % u64::from(span)) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    given.push(port);
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (sigil (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 2000000 5000";
        let status =
            "Name:\tsigil\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 100000 kB\n";
        let f = parse(stat, status).expect("parsed");
        assert!((f.cpu_seconds - 3.0).abs() < 1e-9, "{f:?}");
        assert!((f.peak_rss_mib - 200.0).abs() < 1e-9, "{f:?}");
        assert_eq!(parse("garbage", status), None);
        assert_eq!(parse(stat, "Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let f = read(std::process::id()).expect("this process is readable");
        assert!(f.peak_rss_mib > 0.0);
    }
}
