//! `--garbage`: hostile bytes at every node's p2p and API ports for the whole run, while
//! the load flows: raw random bytes, random bytes after a valid multistream-select header
//! (so libp2p's negotiation reads them), half-open connections, and HTTP requests with random
//! methods, paths and bodies. The nodes must keep attesting and answer no request with a 5xx;
//! RSS is sampled after a warm-up and at the end, to compare with a run without garbage.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Resident memory is first sampled this long after the garbage starts (the nodes' caches
/// fill during the first blocks).
const WARM_UP: Duration = Duration::from_secs(60);

/// What the garbage did and each node's memory.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GarbageReport {
    /// p2p connections opened (connections).
    pub p2p_connections: u64,
    /// Bytes written to p2p ports (bytes).
    pub p2p_bytes: u64,
    /// HTTP requests sent to API ports (requests).
    pub api_requests: u64,
    /// API answers with a 5xx status other than `/readyz`'s 503 (answers).
    pub api_5xx: u64,
    /// Per node (member, RSS after warm-up MiB, RSS at the end MiB); the warm-up sample is
    /// 0 when the run was shorter than the warm-up.
    pub rss_mib: Vec<(u16, f64, f64)>,
}

/// A running garbage generator.
pub struct Garbage {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<GarbageReport>,
}

/// A node's ports and process.
pub struct Target {
    /// Member index.
    pub member: u16,
    /// libp2p TCP listen address.
    pub p2p: SocketAddr,
    /// API base URL.
    pub api: String,
    /// Process id (for `/proc/<pid>/status`).
    pub pid: u32,
}

/// `VmRSS` of `pid` (MiB); 0 when unreadable.
fn rss_mib(pid: u32) -> f64 {
    super::procs::rss_mib(pid).unwrap_or(0.0)
}

impl Garbage {
    /// Starts at every running member of `nodes` (`members`: the same order, with their
    /// p2p ports).
    pub(super) fn at(members: &[(String, u16, u16)], nodes: &[super::NodeProc]) -> Self {
        let targets = members
            .iter()
            .zip(nodes)
            .filter_map(|((_, p2p, _), n)| {
                Some(Target {
                    member: n.member,
                    p2p: SocketAddr::from(([127, 0, 0, 1], *p2p)),
                    api: n.api.clone(),
                    pid: n.child.as_ref()?.id()?,
                })
            })
            .collect();
        Self::start(targets, 0x6a7b)
    }

    /// Starts sending garbage to `targets`, about 40 connections or requests a second in
    /// all (loopback only).
    pub fn start(targets: Vec<Target>, seed: u64) -> Self {
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default();
            let mut rep = GarbageReport::default();
            let started = Instant::now();
            let mut warm: Vec<f64> = Vec::new();
            let mut held: Vec<tokio::net::TcpStream> = Vec::new();
            let mut k = 0u64;
            while !*rx.borrow() {
                if warm.is_empty() && started.elapsed() >= WARM_UP {
                    warm = targets.iter().map(|t| rss_mib(t.pid)).collect();
                }
                let t = &targets[(k as usize) % targets.len()];
                k += 1;
                if k.is_multiple_of(2) {
                    if let Ok(Ok(mut s)) = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(t.p2p),
                    )
                    .await
                    {
                        rep.p2p_connections += 1;
                        let mut buf = vec![0u8; 1 + (rng.next_u32() % 16_384) as usize];
                        rng.fill_bytes(&mut buf);
                        if rng.next_u32().is_multiple_of(2) {
                            let mut framed = b"\x13/multistream/1.0.0\n".to_vec();
                            framed.extend_from_slice(&buf);
                            buf = framed;
                        }
                        if tokio::time::timeout(Duration::from_secs(1), s.write_all(&buf))
                            .await
                            .is_ok_and(|r| r.is_ok())
                        {
                            rep.p2p_bytes += buf.len() as u64;
                        }
                        // Keep a few connections half-open (at most 16), drop the rest.
                        if rng.next_u32().is_multiple_of(8) {
                            held.push(s);
                            if held.len() > 16 {
                                held.remove(0);
                            }
                        }
                    }
                } else {
                    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
                    const PATHS: [&str; 7] = [
                        "/v1/batches/",
                        "/v1/attestations/",
                        "/v1/status",
                        "/metrics",
                        "/readyz",
                        "/v1/",
                        "/",
                    ];
                    let method = METHODS[(rng.next_u32() % 5) as usize];
                    let mut tail = vec![0u8; (rng.next_u32() % 80) as usize];
                    rng.fill_bytes(&mut tail);
                    let tail: String = tail
                        .iter()
                        .map(|b| match b % 4 {
                            0 => char::from(b'0' + b % 10),
                            1 => char::from(b'a' + b % 26),
                            2 => ['%', 'x', '.', '-', '/', '?', '=', '&'][usize::from(b % 8)],
                            _ => 'f',
                        })
                        .collect();
                    let url = format!("{}{}{}", t.api, PATHS[(rng.next_u32() % 7) as usize], tail);
                    let mut body = vec![0u8; (rng.next_u32() % 4_096) as usize];
                    rng.fill_bytes(&mut body);
                    if let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) {
                        rep.api_requests += 1;
                        if let Ok(r) = http.request(m, &url).body(body).send().await {
                            let s = r.status().as_u16();
                            if s >= 500 && !(s == 503 && url.contains("/readyz")) {
                                rep.api_5xx += 1;
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                    _ = rx.changed() => {}
                }
            }
            rep.rss_mib = targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        t.member,
                        warm.get(i).copied().unwrap_or(0.0),
                        rss_mib(t.pid),
                    )
                })
                .collect();
            rep
        });
        Self { stop, task }
    }

    /// Stops and returns the figures.
    pub async fn finish(self) -> GarbageReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

impl GarbageReport {
    /// No API answer was a 5xx (but `/readyz`'s 503). Memory is reported, not judged here:
    /// a node's RSS grows with its store during any long run (31 → 58 MiB over 12 min with
    /// or without garbage, RELIABILITY.md), so "flat" is judged against a control run.
    pub fn passed(&self) -> bool {
        self.api_5xx == 0
    }
}

/// Prints the garbage figures under the report.
pub fn print(g: &GarbageReport) {
    println!(
        "garbage: {} p2p connections ({:.1} MiB), {} API requests ({} answered 5xx): {}",
        g.p2p_connections,
        g.p2p_bytes as f64 / (1024.0 * 1024.0),
        g.api_requests,
        g.api_5xx,
        if g.passed() { "PASSED" } else { "FAILED" }
    );
    for (m, warm, end) in &g.rss_mib {
        let growth = if *warm > 0.0 {
            (end / warm - 1.0) * 100.0
        } else {
            0.0
        };
        println!(
            "  node {m}: RSS {warm:.1} MiB after warm-up -> {end:.1} MiB at the end ({growth:+.1}%)"
        );
    }
}
