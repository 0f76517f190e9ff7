//! The local devnet: two anvil chains, the contracts deployed on both (gateways routed to
//! each other's inbox), N `sigil` node processes that run a real DKG over libp2p, a
//! standalone `sigil relay`, and a load of messages sent both ways — optionally with
//! `--poison N` messages to a gas-burning recipient among them, which must end Failed
//! (retryable) without holding up the rest — ending in a report (latency percentiles,
//! throughput, gas per message, per-node figures). Everything lives in one run directory.

use crate::chain::{
    RecordingReceiver, SigilGateway, SigilInbox, deploy_gateway, deploy_inbox, deploy_receiver,
    provider_for, repo_root, set_route, spawn_anvil_with,
};
use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use anyhow::{Context, Result, anyhow, bail};
use sigil_node::api::BatchView;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub use args::DevnetArgs;

mod args;
pub(crate) mod audit;
mod churn;
mod config;
mod deep;
mod garbage;
mod load;
mod monitor;
pub mod netns;
mod pause;
mod procs;
mod reorg;
mod report;
mod rotate;
mod track;
mod verify;
pub use audit::Audit;
use config::node_config;
pub use procs::ProcFigures;
use report::percentiles;
pub use report::{NodeFigures, Report, print_report};
pub use rotate::RotationReport;
use track::{HeadClock, Tracker};

struct NodeProc {
    member: u16,
    home: PathBuf,
    api: String,
    child: Option<Child>,
    state: &'static str,
}

struct Chain {
    id: u64,
    anvil: AnvilInstance,
    /// The RPC URLs the nodes' watchers use (a majority must agree): the anvil endpoint,
    /// and with `--lying-rpc` an honest and a lying fault proxy in front of it.
    rpcs: Vec<String>,
    gateway: Address,
    inbox: Address,
    receiver: Address,
    burner: Address,
    /// A `FixableReceiver` (fails until `fix()`), for the admin check's retry.
    fixable: Address,
}

/// One sent message, from its `MessageSent` event.
struct Sent {
    at_ms: u64,
    /// The source block holding its log.
    block: u64,
    payload: Bytes,
    forward: bool,
    source_chain: u64,
    gateway: Address,
    nonce: u64,
    poison: bool,
}

fn sigil_bin(args: &DevnetArgs) -> Result<PathBuf> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no exe dir"))?
            .to_owned(),
    };
    let p = dir.join("sigil");
    if !p.exists() {
        bail!(
            "{} not found; build with `cargo build --release -p sigil-node`",
            p.display()
        );
    }
    Ok(p)
}

fn sigil(bin: &Path, home: &Path) -> Command {
    // With `--netns` a member's commands run on its own host.
    let mut c = match netns::namespace_of(home) {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg("--home")
        .arg(home)
        .env("SIGIL_PASSPHRASE", "devnet-insecure-passphrase")
        .env("SIGIL_INSECURE_FAST_KDF", "1")
        .kill_on_drop(true);
    c
}

async fn deploy_chain(id: u64, block_time: u64, gas_limit: Option<u64>) -> Result<Chain> {
    let anvil = spawn_anvil_with(id, Some(block_time), gas_limit)?;
    let p = provider_for(&anvil, 0)?;
    let admin = anvil.addresses()[0];
    let gateway = deploy_gateway(&p, admin).await?;
    let (inbox, receiver) = deploy_inbox(&p, admin).await?;
    let burner = deploy_receiver(&p, "GasBurnerReceiver", inbox).await?;
    let fixable = deploy_receiver(&p, "FixableReceiver", inbox).await?;
    Ok(Chain {
        id,
        rpcs: vec![anvil.endpoint()],
        anvil,
        gateway,
        inbox,
        receiver,
        burner,
        fixable,
    })
}

/// Routes `from`'s gateway to `to`'s inbox (messages from `from` to `to` name that inbox).
async fn route(from: &Chain, to: &Chain) -> Result<()> {
    let p = provider_for(&from.anvil, 0)?;
    set_route(&p, from.gateway, to.id, to.inbox)
        .await
        .with_context(|| format!("route {} -> {}", from.id, to.id))
}

/// Runs the devnet and returns its report (see the module docs).
/// Errors: any setup step (anvil, deploy, init, DKG), each named.
pub async fn run(args: DevnetArgs) -> Result<Report> {
    let t0 = Instant::now();
    let bin = sigil_bin(&args)?;
    let run_dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => repo_root()
            .join("devnet-runs")
            .join(sigil_node::now_ms().to_string()),
    };
    std::fs::create_dir_all(&run_dir)?;
    let run_dir = run_dir.canonicalize()?;
    println!("run directory: {}", run_dir.display());

    // 0. With `--netns`, a host per member (removed when the run ends).
    let joiners = if args.rotate_at.is_some() {
        args.join
    } else {
        0
    };
    let netns = match args.netns {
        true => {
            let homes: Vec<PathBuf> = (1..=args.nodes + joiners)
                .map(|i| run_dir.join(format!("node{i}")))
                .collect();
            let n = netns::Netns::create(&homes, args.latency_ms).context("--netns")?;
            println!(
                "{} members in network namespaces of their own on {}/24, {} ms one way",
                n.count(),
                n.gateway(),
                args.latency_ms
            );
            Some(n)
        }
        false => None,
    };
    let host_of = |i: usize| {
        netns
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, |n| n.host(i as u16))
    };

    // 1. Chains and contracts.
    let mut a = deploy_chain(1001, args.block_time, args.gas_limit)
        .await
        .context("chain A")?;
    let mut b = deploy_chain(1002, args.block_time, args.gas_limit)
        .await
        .context("chain B")?;
    if let Some(n) = &netns {
        // The members reach the chains on the bridge.
        use crate::faultproxy::{FaultProxy, Mode};
        for c in [&mut a, &mut b] {
            let at = std::net::SocketAddr::from((n.gateway(), 0));
            c.rpcs = vec![
                FaultProxy::start_on(at, c.anvil.endpoint(), Mode::Honest)
                    .await?
                    .url,
            ];
        }
    }
    if args.lying_rpc {
        use crate::faultproxy::{FaultProxy, Mode};
        for c in [&mut a, &mut b] {
            let honest = FaultProxy::start(c.anvil.endpoint(), Mode::Honest).await?;
            let liar = FaultProxy::start(c.anvil.endpoint(), Mode::Lie).await?;
            c.rpcs = vec![c.anvil.endpoint(), honest.url, liar.url];
        }
        println!("each node watches each chain through 3 RPCs, quorum 2, one of them lying");
    }
    route(&a, &b).await?;
    route(&b, &a).await?;
    println!(
        "chain A: id {} at {}   chain B: id {} at {}",
        a.id,
        a.anvil.endpoint(),
        b.id,
        b.anvil.endpoint()
    );

    // 2. Node homes (the joiners' too: their config lists the current committee).
    if args.rotate_at.is_some()
        && (args.leave >= args.nodes || args.nodes - args.leave + args.join < 4)
    {
        bail!(
            "--join {} --leave {}: the next committee needs at least 4 members",
            args.join,
            args.leave
        );
    }
    let mut members = Vec::new();
    for i in 1..=args.nodes + joiners {
        let home = run_dir.join(format!("node{i}"));
        let (p2p, api) = (free_port()?, free_port()?);
        let out = sigil(&bin, &home)
            .args(["init", "--moniker", &format!("node-{i}")])
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
            .args(["--api", &format!("127.0.0.1:{api}")])
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "sigil init node{i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("node key:"))
            .map(|k| k.trim().to_owned())
            .ok_or_else(|| anyhow!("sigil init printed no node key"))?;
        members.push((key, p2p, api));
    }
    let keys: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
    let (members, joining) = members.split_at(usize::from(args.nodes));
    let mut nodes = Vec::new();
    // The multiaddr each member is dialled at (and advertises): its own, or with
    // `--latency-ms` on a kernel without netem, a delay proxy's on the bridge.
    let own = |i: usize, m: &(String, u16, u16)| format!("/ip4/{}/tcp/{}", host_of(i), m.1);
    let mut addresses: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, m)| own(i + 1, m))
        .collect();
    if let Some(n) = netns.as_ref().filter(|n| args.latency_ms > 0 && !n.netem()) {
        for (i, m) in members.iter().enumerate() {
            let upstream = std::net::SocketAddr::from((host_of(i + 1), m.1));
            let at = crate::delayproxy::start(
                (n.gateway(), 0).into(),
                upstream,
                Duration::from_millis(args.latency_ms),
            )
            .await?;
            addresses[i] = format!("/ip4/{}/tcp/{}", at.ip(), at.port());
        }
        println!(
            "no tc netem on this kernel: members are dialled through delay proxies ({} ms each way)",
            args.latency_ms
        );
    }
    for (i, m) in members.iter().chain(joining).enumerate() {
        let home = run_dir.join(format!("node{}", i + 1));
        let address = addresses.get(i).cloned().unwrap_or_else(|| own(i + 1, m));
        std::fs::write(
            home.join("config.toml"),
            node_config(
                (m, host_of(i + 1), &address),
                members,
                &addresses,
                &[&a, &b],
                &args,
            ),
        )?;
        nodes.push(NodeProc {
            member: i as u16 + 1,
            home,
            api: format!("http://{}:{}", host_of(i + 1), m.2),
            child: None,
            state: "running",
        });
    }

    // 3. DKG over the network, all members at once (joiners take part in the next one).
    println!("running DKG among {} nodes ...", args.nodes);
    let mut dkgs = Vec::new();
    for n in nodes.iter().take(usize::from(args.nodes)) {
        let log = std::fs::File::create(n.home.join("dkg.log"))?;
        let child = sigil(&bin, &n.home)
            .args(["dkg", "--timeout", "90s"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        dkgs.push(child);
    }
    for (i, c) in dkgs.into_iter().enumerate() {
        let out = c.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "sigil dkg on node{} failed; see {}",
                i + 1,
                nodes[i].home.join("dkg.log").display()
            );
        }
    }
    let mut group_keys = BTreeSet::new();
    for n in nodes.iter().take(usize::from(args.nodes)) {
        let g: sigil_node::keyfiles::GroupKeyFile = serde_json::from_str(
            &std::fs::read_to_string(n.home.join(sigil_node::keyfiles::GROUP_KEY))?,
        )?;
        group_keys.insert((g.compressed.clone(), g.x.clone(), g.y.clone()));
    }
    if group_keys.len() != 1 {
        bail!("members derived different group keys: {group_keys:?}");
    }
    let (gk, gx, gy) = group_keys
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no group key"))?;
    println!("group key: {gk}");

    // 4. Register the key on both inboxes.
    for c in [&a, &b] {
        let p = provider_for(&c.anvil, 0)?;
        let inbox = SigilInbox::new(c.inbox, &p);
        let r = inbox
            .initialize(1, gx.parse::<U256>()?, gy.parse::<U256>()?)
            .send()
            .await?
            .get_receipt()
            .await?;
        if !r.status() {
            bail!("inbox.initialize reverted on chain {}", c.id);
        }
    }

    // 5. Nodes and relayer (joiners start at the rotation).
    for n in nodes.iter_mut().take(usize::from(args.nodes)) {
        n.child = Some(start_node(&bin, &n.home)?);
    }
    wait_for_apis(&mut nodes[..usize::from(args.nodes)]).await?;
    for n in nodes.iter_mut().skip(usize::from(args.nodes)) {
        n.state = "waiting";
    }
    let mut rotation = args
        .rotate_at
        .map(|_| rotate::Rotation::new(args.nodes, joiners, args.leave));
    let relayer_home = run_dir.join("relayer");
    let relayer_metrics = format!("127.0.0.1:{}", free_port()?);
    let relayer_admin = format!("127.0.0.1:{}", free_port()?);
    // The admin check retries a Failed message by hand: the relayer's own retries wait.
    let mut relayer_args = vec!["--metrics", &relayer_metrics, "--admin", &relayer_admin];
    if args.pause_check {
        relayer_args.extend(["--retry-min", "10m"]);
    }
    let relayer_proc = start_relayer(&bin, &relayer_home, &nodes, [&a, &b], &relayer_args)?;
    let monitor = match args.monitor {
        true => Some(monitor::start_for(&run_dir, &nodes, &relayer_metrics).await?),
        false => None,
    };

    // 6. Load, with a clock on both chains' heads (finality moments).
    let head_clock = HeadClock::default();
    let head_task = head_clock.spawn(vec![
        (
            a.id,
            ProviderBuilder::new()
                .connect_http(a.anvil.endpoint_url())
                .erased(),
        ),
        (
            b.id,
            ProviderBuilder::new()
                .connect_http(b.anvil.endpoint_url())
                .erased(),
        ),
    ]);
    let back = args.back.unwrap_or(args.messages / 10);
    let sender_key = a.anvil.keys()[2].clone();
    let sender = PrivateKeySigner::from(sender_key.clone());
    let pa = provider_for(&a.anvil, 2)?.erased();
    let pb = provider_for(&b.anvil, 2)?.erased();
    // (forward, index, poison)
    let mut plan: Vec<(bool, u32, bool)> = (0..args.messages).map(|i| (true, i, false)).collect();
    // Interleave the way back.
    for j in 0..back {
        let at = ((j as u64 + 1) * plan.len() as u64 / (back as u64 + 1)) as usize;
        plan.insert(at.min(plan.len()), (false, j, false));
    }
    // Spread the poison messages among the good ones, alternating directions.
    for j in 0..args.poison {
        let at = ((j as u64 + 1) * plan.len() as u64 / (args.poison as u64 + 1)) as usize;
        plan.insert(at.min(plan.len()), (j % 2 == 0, j, true));
    }
    let total = plan.len();
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut nonces: HashMap<bool, u64> = HashMap::new();
    nonces.insert(true, pa.get_transaction_count(sender.address()).await?);
    nonces.insert(false, pb.get_transaction_count(sender.address()).await?);
    let mut sent_at: HashMap<Bytes, u64> = HashMap::new();
    let mut tracker = Tracker::new(&a, &b);
    let mut killed_at: Option<Instant> = None;
    let mut churn = args
        .churn
        .map(|secs| churn::Churn::new(Duration::from_secs(secs), usize::from(args.nodes)));
    let burst = args.burst.max(1) as usize;
    // A sendMessages transaction must fit the block gas limit (anvil's default 30M).
    let per_tx = (args.per_tx as usize).min(load::max_per_tx(args.gas_limit.unwrap_or(30_000_000)));
    let interval = Duration::from_secs_f64(burst as f64 / f64::from(args.rate.max(1)));
    let mut reorgs = match args.reorgs {
        0 => None,
        n => Some(reorg::Reorgs::new(
            n,
            args.reorg_depth.unwrap_or(args.confirmations),
            args.confirmations,
            plan.len().div_ceil(burst),
        )?),
    };
    let garbage = args.garbage.then(|| garbage::Garbage::at(members, &nodes));
    for (k, chunk) in plan.chunks(burst).enumerate() {
        let tick = started + interval * k as u32;
        // Watch attestations and deliveries every 50 ms while waiting for the next burst
        // (the attestation moment is when the tracker first saw it).
        while Instant::now() + Duration::from_millis(50) < tick {
            if let Some(c) = churn.as_mut() {
                c.step(&bin, &mut nodes).await?;
            }
            tracker.poll(&nodes).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep_until(tick.into()).await;
        for tx in load::group(chunk, per_tx) {
            let (p, gw, dest, to) = if tx.forward {
                (&pa, a.gateway, b.id, &b)
            } else {
                (&pb, b.gateway, a.id, &a)
            };
            let recv = if tx.poison { to.burner } else { to.receiver };
            let payloads: Vec<Bytes> = tx
                .indices
                .iter()
                .map(|i| load::payload(tx.forward, *i, tx.poison))
                .collect();
            let nonce = nonces
                .get_mut(&tx.forward)
                .ok_or_else(|| anyhow!("nonce"))?;
            let gateway = SigilGateway::new(gw, p.clone());
            let pend = if let [one] = payloads.as_slice() {
                // sendMessage_0: the three-argument overload, default gas limit (200,000).
                gateway
                    .sendMessage_0(dest, recv, one.clone())
                    .nonce(*nonce)
                    .gas(200_000)
                    .send()
                    .await
            } else {
                let gas = load::send_messages_gas(payloads.len());
                gateway
                    .sendMessages(dest, recv, payloads.clone(), 200_000)
                    .nonce(*nonce)
                    .gas(gas)
                    .send()
                    .await
            }
            .context("sendMessage")?;
            *nonce += 1;
            let now = sigil_node::now_ms();
            for pl in payloads {
                sent_at.insert(pl, now);
            }
            pending.push((tx.forward, *pend.tx_hash()));
        }
        if let (Some(victim), None) = (args.kill_node, killed_at)
            && (k + 1) * burst >= total / 2
            && let Some(n) = nodes.iter_mut().find(|n| n.member == victim)
            && let Some(mut c) = n.child.take()
        {
            let _ = c.start_kill();
            let _ = c.wait().await;
            n.state = "killed";
            killed_at = Some(Instant::now());
            println!("killed node {victim} after {} messages", (k + 1) * burst);
        }
        if let (Some(r), Some(at)) = (rotation.as_mut(), args.rotate_at)
            && !r.started()
            && (k + 1) * burst >= at as usize
        {
            r.begin(&bin, &mut nodes, &keys, (k + 1) * burst).await?;
        }
        if let Some(r) = reorgs.as_mut()
            && r.due(k)
        {
            let forward = r.done % 2 == 0;
            let (src, dst) = if forward { (&a, &b) } else { (&b, &a) };
            let rep = r.run(src, dst, forward, args.block_time).await?;
            if let Some((_, orphan)) = r.orphans.last() {
                tracker.orphans.insert(orphan.clone());
            }
            sent_at.insert(rep.payload, sigil_node::now_ms());
            pending.push((rep.forward, rep.tx));
        }
        tracker.poll(&nodes).await;
        if let Some(r) = rotation.as_mut() {
            tracker.observe_rotation(r, &mut nodes).await;
        }
        if !args.quiet {
            tracker.progress(total.min((k + 1) * burst), total);
        }
    }
    let sent_ids = track::sent_from_receipts(pending, [(&pa, &a), (&pb, &b)], &sent_at).await?;
    // The load plus one replacement message per reorg.
    let total = total + reorgs.as_ref().map_or(0, |r| r.done as usize);
    if sent_ids.len() != total {
        bail!(
            "{} sendMessage receipts carry {} MessageSent events",
            total,
            sent_ids.len()
        );
    }
    let mut restarted = false;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < deadline {
        if let (Some(after), Some(at), false) = (args.restart_after, killed_at, restarted)
            && at.elapsed() >= Duration::from_secs(after)
            && let Some(n) = nodes.iter_mut().find(|n| Some(n.member) == args.kill_node)
        {
            n.child = Some(start_node(&bin, &n.home)?);
            n.state = "restarted";
            restarted = true;
            println!("restarted node {}", n.member);
        }
        if let Some(c) = churn.as_mut() {
            c.step(&bin, &mut nodes).await?;
        }
        tracker.poll(&nodes).await;
        if let Some(r) = rotation.as_mut() {
            tracker.observe_rotation(r, &mut nodes).await;
        }
        if !args.quiet {
            tracker.progress(total, total);
        }
        if rotation.as_ref().is_none_or(|r| r.report.done())
            && sent_ids.iter().all(|(id, s)| {
                if s.poison {
                    tracker.failed.contains_key(id)
                } else {
                    tracker.delivered.contains_key(id)
                }
            })
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !args.quiet {
        println!();
    }
    if let Some(r) = rotation.as_mut()
        && r.report.done()
        && let Some(n) = nodes.first()
    {
        r.report.pruned = rotate::prune_old_share(&bin, &n.home).await?;
    }
    let pause_check = match args.pause_check {
        true => Some(
            pause::run(
                &bin,
                [&a, &b],
                &nodes,
                &mut tracker,
                args.nodes,
                pause::RelayerAdmin {
                    home: &relayer_home,
                    addr: &relayer_admin,
                },
            )
            .await
            .context("pause check")?,
        ),
        false => None,
    };
    let deep_reorg = match args.deep_reorg {
        true => Some(
            deep::run(
                &a,
                &b,
                &nodes,
                &mut tracker,
                args.confirmations,
                args.block_time,
            )
            .await
            .context("deep reorg")?,
        ),
        false => None,
    };
    // 7. Report.
    let garbage = match garbage {
        Some(g) => Some(g.finish().await),
        None => None,
    };
    let heads = head_clock.snapshot();
    head_task.abort();
    let mut missing = Vec::new();
    let mut attest_lat = Vec::new();
    let mut deliver_lat = Vec::new();
    let mut gap = Vec::new();
    let mut last_delivery = 0u64;
    for (id, s) in &sent_ids {
        // Source finality measured: the moment the head first reached the block that makes
        // the message's log final (its block + confirmations), seen by polling every 50 ms.
        let Some(fin) = heads.final_at(s.source_chain, s.block + args.confirmations) else {
            continue;
        };
        if let Some(at) = tracker.attested.get(id) {
            attest_lat.push(at.saturating_sub(fin));
        }
        if s.poison {
            continue;
        }
        // The delivery moment: when the block holding the delivery first appeared.
        let delivered_at = tracker.delivered.get(id).map(|seen| {
            tracker
                .delivered_in
                .get(id)
                .and_then(|(c, b)| heads.final_at(*c, *b))
                .map_or(*seen, |t| t.min(*seen))
        });
        match delivered_at.as_ref() {
            Some(at) => {
                deliver_lat.push(at.saturating_sub(fin));
                last_delivery = last_delivery.max(*at);
                if let Some(att) = tracker.attested.get(id) {
                    gap.push(at.saturating_sub(*att));
                }
            }
            None => missing.push(*id),
        }
    }
    // Duplicates: any payload the receivers recorded twice. Poison messages: Failed on the
    // inbox (and so retryable), never delivered.
    let mut duplicates = Vec::new();
    let mut failed = 0;
    let mut not_failed = Vec::new();
    for (id, s) in &sent_ids {
        let (c, p) = if s.forward { (&b, &pb) } else { (&a, &pa) };
        if s.poison {
            let status = SigilInbox::new(c.inbox, p.clone())
                .statusOf(s.source_chain, s.gateway, s.nonce)
                .call()
                .await?;
            if status == sigil_node::contracts::STATUS_FAILED && !tracker.delivered.contains_key(id)
            {
                failed += 1;
            } else {
                not_failed.push(*id);
            }
            continue;
        }
        let times: U256 = RecordingReceiver::new(c.receiver, p.clone())
            .timesReceived(alloy::primitives::keccak256(&s.payload))
            .call()
            .await?;
        if times > U256::from(1) {
            duplicates.push(*id);
        }
    }
    // Orphans (reorged away before they were final): no receiver may have them.
    let mut orphans_delivered = 0;
    for (forward, payload) in reorgs.as_ref().map_or(&[][..], |r| &r.orphans[..]) {
        let (c, p) = if *forward { (&b, &pb) } else { (&a, &pa) };
        let times: U256 = RecordingReceiver::new(c.receiver, p.clone())
            .timesReceived(alloy::primitives::keccak256(payload))
            .call()
            .await?;
        if times > U256::ZERO {
            orphans_delivered += 1;
        }
    }
    let gas = relayer_gas(&relayer_home.join("relayer_txs.jsonl"));
    let delivered = sent_ids
        .iter()
        .filter(|(id, s)| !s.poison && tracker.delivered.contains_key(*id))
        .count();
    let first_send = sent_ids.values().map(|s| s.at_ms).min().unwrap_or(0);
    let span = last_delivery.saturating_sub(first_send).max(1) as f64 / 1000.0;
    let mut figures = Vec::new();
    for n in &nodes {
        let s = tracker.node_status(&n.api).await;
        figures.push(NodeFigures {
            member: n.member,
            state: n.state.to_owned(),
            process: n.child.as_ref().and_then(|c| c.id()).and_then(procs::read),
            decided: s
                .as_ref()
                .map_or(0, |s| s["decidedHeight"].as_u64().unwrap_or(0)),
            attested: s
                .as_ref()
                .map_or(0, |s| s["attestedHeight"].as_u64().unwrap_or(0)),
            peers: s
                .as_ref()
                .map_or(0, |s| s["peers"].as_array().map_or(0, |p| p.len())),
            culprits: tracker.metric(&n.api, "sigil_signing_culprits_total").await,
            timeouts: tracker
                .metric(&n.api, "sigil_consensus_timeouts_total")
                .await,
        });
    }
    let mut report = Report {
        sent: total,
        poison: sent_ids.values().filter(|s| s.poison).count(),
        attested: sent_ids
            .keys()
            .filter(|id| tracker.attested.contains_key(*id))
            .count(),
        delivered,
        failed,
        missing,
        not_failed,
        duplicates,
        attest_ms: percentiles(attest_lat),
        deliver_ms: percentiles(deliver_lat),
        gap_ms: percentiles(gap),
        throughput: delivered as f64 / span,
        attested_throughput: {
            let last = tracker.attested.values().copied().max().unwrap_or(0);
            let n = tracker.attested.len() as f64;
            n / (last.saturating_sub(first_send).max(1) as f64 / 1000.0)
        },
        relayer: relayer_proc.id().and_then(procs::read),
        chains: [&a, &b].map(|c| procs::read(c.anvil.child().id())),
        sender: procs::read(std::process::id()),
        churn_kills: churn.as_ref().map_or(0, |c| c.kills),
        reorgs: reorgs.as_ref().map_or(0, |r| r.done),
        orphans_attested: tracker.orphans_attested,
        orphans_delivered,
        gas_per_message: if delivered > 0 {
            gas as f64 / delivered as f64
        } else {
            0.0
        },
        heights: figures.iter().map(|f| f.decided).max().unwrap_or(0),
        seconds: t0.elapsed().as_secs_f64(),
        nodes: figures,
        rotation: rotation.map(|mut r| {
            r.report.messages_per_epoch = [
                tracker.per_epoch.get(&1).copied().unwrap_or(0),
                tracker.per_epoch.get(&2).copied().unwrap_or(0),
            ];
            r.report
        }),
        audit: None,
        garbage,
        deep_reorg,
        verify: None,
        monitor: None,
        pause_check,
    };
    if let Some(m) = &monitor {
        let expect: &[&str] = match report.deep_reorg {
            Some(_) => &["SigilChainHalted"],
            None => &[],
        };
        report.monitor = Some(m.check(expect).await.context("--monitor")?);
    }
    let api = nodes
        .iter()
        .find(|n| n.child.is_some())
        .map(|n| n.api.as_str());
    report.verify = verify::last_delivered(&bin, api, &sent_ids, &tracker.delivered, &b, &run_dir)
        .await
        .context("sigil verify")?;
    if !args.keep_running {
        // The auditor reads the stores: stop the members first (their writes are synced).
        for n in nodes.iter_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
        let homes: Vec<PathBuf> = nodes.iter().map(|n| n.home.clone()).collect();
        report.audit = Some(audit::run(&a, &b, &homes).await.context("audit")?);
    }
    std::fs::write(
        run_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    print_report(&report);

    // 8. Keep running?
    let info = serde_json::json!({
        "runDir": run_dir,
        "chains": [
            {"name": "a", "chainId": a.id, "rpc": a.anvil.endpoint(), "gateway": a.gateway, "inbox": a.inbox, "receiver": a.receiver, "gasBurner": a.burner},
            {"name": "b", "chainId": b.id, "rpc": b.anvil.endpoint(), "gateway": b.gateway, "inbox": b.inbox, "receiver": b.receiver, "gasBurner": b.burner},
        ],
        "fundedKey": format!("0x{}", hex::encode(sender_key.to_bytes())),
        "fundedAddress": sender.address(),
        "groupKey": gk,
        "prometheus": monitor.as_ref().map(|m| m.url.clone()),
        "nodes": nodes.iter().map(|n| serde_json::json!({"member": n.member, "api": n.api, "home": n.home})).collect::<Vec<_>>(),
        "stop": format!("Ctrl-C in this terminal, or kill -INT {}", std::process::id()),
    });
    std::fs::write(
        run_dir.join("devnet.json"),
        serde_json::to_string_pretty(&info)?,
    )?;
    if args.keep_running {
        println!(
            "\ndevnet is up (also in {}):",
            run_dir.join("devnet.json").display()
        );
        println!("{}", serde_json::to_string_pretty(&info)?);
        println!("press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    Ok(report)
}

use procs::{free_port, relayer_gas, start_node, start_node_with, start_relayer, wait_for_apis};
