//! What the devnet watches: both chains' heads (finality moments), attested batches on the
//! node APIs, deliveries and failures on the inboxes.

use super::*;

/// When each chain's head first reached each block number (ms since the Unix epoch), polled
/// every 50 ms: a block that appeared between two polls gets the later poll's time.
#[derive(Clone, Default)]
pub(super) struct HeadClock(std::sync::Arc<std::sync::Mutex<BTreeMap<u64, BTreeMap<u64, u64>>>>);

impl HeadClock {
    /// Polls `chains` (chain id, provider) until aborted.
    pub(super) fn spawn(&self, chains: Vec<(u64, DynProvider)>) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        tokio::spawn(async move {
            loop {
                for (id, p) in &chains {
                    if let Ok(head) = p.get_block_number().await {
                        let now = sigil_node::now_ms();
                        if let Ok(mut m) = clock.0.lock() {
                            let seen = m.entry(*id).or_default();
                            let from = seen.keys().next_back().map_or(head, |b| b + 1);
                            for b in from..=head {
                                seen.insert(b, now);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    pub(super) fn snapshot(&self) -> HeadClock {
        HeadClock(std::sync::Arc::new(std::sync::Mutex::new(
            self.0.lock().map(|m| m.clone()).unwrap_or_default(),
        )))
    }

    /// When `chain`'s head first reached `block` (ms), if it did.
    pub(super) fn final_at(&self, chain: u64, block: u64) -> Option<u64> {
        let m = self.0.lock().ok()?;
        m.get(&chain)?.range(block..).next().map(|(_, t)| *t)
    }
}

/// Fetches attested batches from the node APIs in a task of its own, every 20 ms, height
/// after height, stamping each with the moment it was first fetched (ms since the Unix
/// epoch). The send loop can be busy for seconds during a burst; stamping there would
/// make attestations look late.
struct AttestFeed {
    /// The APIs of the members running now (the tracker refreshes it each poll).
    apis: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    rx: tokio::sync::mpsc::UnboundedReceiver<(u64, BatchView)>,
    task: tokio::task::JoinHandle<()>,
}

impl AttestFeed {
    fn spawn(http: reqwest::Client) -> Self {
        let apis = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = apis.clone();
        let task = tokio::spawn(async move {
            let mut height = 1u64;
            loop {
                let now_apis = shared.lock().map(|a| a.clone()).unwrap_or_default();
                match sigil_node::relayer::fetch_batch(&http, &now_apis, height).await {
                    Ok(Some(bv)) => {
                        if tx.send((sigil_node::now_ms(), bv)).is_err() {
                            return;
                        }
                        height += 1;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Self { apis, rx, task }
    }
}

impl Drop for AttestFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches attestations (node APIs, through an [`AttestFeed`]), deliveries and failures
/// (inbox logs).
pub(super) struct Tracker {
    pub(super) http: reqwest::Client,
    feed: AttestFeed,
    pub(super) attested: HashMap<B256, u64>,
    pub(super) delivered: HashMap<B256, u64>,
    /// The (chain id, block) holding each delivery: the delivery moment is when that block
    /// first appeared ([`HeadClock`]), not when this tracker saw the log.
    pub(super) delivered_in: HashMap<B256, (u64, u64)>,
    pub(super) failed: HashMap<B256, u64>,
    /// (chain id, provider, inbox, next block to scan).
    pub(super) inboxes: Vec<(u64, DynProvider, Address, u64)>,
    /// Messages in attested batches, per key epoch.
    pub(super) per_epoch: BTreeMap<u64, u64>,
    /// Payloads orphaned by `--reorgs` (known before they could be final).
    pub(super) orphans: std::collections::HashSet<Bytes>,
    /// Attested messages carrying an orphaned payload (must stay 0).
    pub(super) orphans_attested: usize,
}

impl Tracker {
    pub(super) fn new(a: &Chain, b: &Chain) -> Self {
        let inboxes = [a, b]
            .iter()
            .map(|c| {
                (
                    c.id,
                    ProviderBuilder::new()
                        .connect_http(c.anvil.endpoint_url())
                        .erased(),
                    c.inbox,
                    0u64,
                )
            })
            .collect();
        let http = reqwest::Client::new();
        Self {
            feed: AttestFeed::spawn(http.clone()),
            http,
            attested: HashMap::new(),
            delivered: HashMap::new(),
            delivered_in: HashMap::new(),
            failed: HashMap::new(),
            inboxes,
            per_epoch: BTreeMap::new(),
            orphans: Default::default(),
            orphans_attested: 0,
        }
    }

    pub(super) async fn poll(&mut self, nodes: &[NodeProc]) {
        let apis: Vec<String> = nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.api.clone())
            .collect();
        if let Ok(mut a) = self.feed.apis.lock() {
            *a = apis;
        }
        while let Ok((at, bv)) = self.feed.rx.try_recv() {
            self.on_batch(at, &bv);
        }
        let now = sigil_node::now_ms();
        for (chain, p, inbox, from) in self.inboxes.iter_mut() {
            let Ok(head) = p.get_block_number().await else {
                continue;
            };
            if head < *from {
                continue;
            }
            let f = Filter::new()
                .address(*inbox)
                .event_signature(vec![
                    SigilInbox::MessageDelivered::SIGNATURE_HASH,
                    SigilInbox::MessageFailed::SIGNATURE_HASH,
                ])
                .from_block(*from)
                .to_block(head);
            if let Ok(logs) = p.get_logs(&f).await {
                for l in logs {
                    if let Ok(ev) = l.log_decode::<SigilInbox::MessageDelivered>() {
                        let id = ev.inner.data.messageId;
                        self.delivered.entry(id).or_insert(now);
                        if let Some(b) = l.block_number {
                            self.delivered_in.entry(id).or_insert((*chain, b));
                        }
                    } else if let Ok(ev) = l.log_decode::<SigilInbox::MessageFailed>() {
                        self.failed.entry(ev.inner.data.messageId).or_insert(now);
                    }
                }
                *from = head + 1;
            }
        }
    }

    /// Records batch `bv`, first fetched at `at` (ms since the Unix epoch).
    fn on_batch(&mut self, at: u64, bv: &BatchView) {
        for m in &bv.messages {
            self.attested.entry(m.id).or_insert(at);
            if self.orphans.contains(&m.message.payload) {
                self.orphans_attested += 1;
            }
        }
        *self.per_epoch.entry(bv.epoch).or_default() += bv.messages.len() as u64;
    }

    pub(super) fn progress(&self, sent: usize, total: usize) {
        use std::io::Write;
        let bar = |n: usize| {
            let w = 20 * n / total.max(1);
            format!("[{}{}]", "#".repeat(w), ".".repeat(20 - w.min(20)))
        };
        print!(
            "\rsent {} {sent}/{total}  attested {} {}  delivered {} {}   ",
            bar(sent),
            bar(self.attested.len().min(total)),
            self.attested.len(),
            bar(self.delivered.len().min(total)),
            self.delivered.len()
        );
        let _ = std::io::stdout().flush();
    }

    /// Reads every node's epoch and both inboxes' current epochs for the rotation.
    pub(super) async fn observe_rotation(&self, r: &mut rotate::Rotation, nodes: &mut [NodeProc]) {
        let mut epochs = Vec::new();
        for n in nodes.iter() {
            let e = match n.child {
                Some(_) => self
                    .node_status(&n.api)
                    .await
                    .and_then(|s| s["epoch"].as_u64())
                    .unwrap_or(0),
                None => 0,
            };
            epochs.push(e);
        }
        let mut inboxes = Vec::new();
        for (_, p, inbox, _) in &self.inboxes {
            match SigilInbox::new(*inbox, p.clone())
                .currentEpoch()
                .call()
                .await
            {
                Ok(e) => inboxes.push(e),
                Err(_) => return,
            }
        }
        r.observe(nodes, &epochs, &inboxes);
    }

    pub(super) async fn node_status(&self, api: &str) -> Option<serde_json::Value> {
        self.http
            .get(format!("{api}/v1/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    pub(super) async fn metric(&self, api: &str, name: &str) -> u64 {
        let Ok(r) = self
            .http
            .get(format!("{api}/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            return 0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0, |v| v as u64)
    }
}

/// Each sent message, from the `MessageSent` events of the load's transactions (`pending`:
/// direction A → B, hash), waiting up to 120 s for each receipt; `chains`: (provider,
/// chain) of A then B; `sent_at`: send moments by payload. Errors: RPC failures, or a
/// receipt missing after 120 s.
pub(super) async fn sent_from_receipts(
    pending: Vec<(bool, B256)>,
    chains: [(&DynProvider, &Chain); 2],
    sent_at: &HashMap<Bytes, u64>,
) -> Result<BTreeMap<B256, Sent>> {
    let [(pa, a), (pb, b)] = chains;
    let mut sent_ids: BTreeMap<B256, Sent> = BTreeMap::new();
    for (forward, hash) in pending {
        let (p, c) = if forward { (&pa, &a) } else { (&pb, &b) };
        let asked = Instant::now();
        let r = loop {
            if let Some(r) = p.get_transaction_receipt(hash).await? {
                break r;
            }
            if asked.elapsed() > Duration::from_secs(120) {
                bail!("no receipt for sent transaction {hash} after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for log in r.inner.logs() {
            if let Ok(ev) = log.log_decode::<SigilGateway::MessageSent>() {
                let d = ev.inner.data;
                let at = sent_at.get(&d.payload).copied().unwrap_or(0);
                let to = if forward { &b } else { &a };
                sent_ids.insert(
                    d.messageId,
                    Sent {
                        at_ms: at,
                        block: r.block_number.unwrap_or(0),
                        payload: d.payload.clone(),
                        forward,
                        source_chain: c.id,
                        gateway: c.gateway,
                        nonce: d.nonce,
                        poison: d.recipient == to.burner,
                    },
                );
            }
        }
    }
    Ok(sent_ids)
}
