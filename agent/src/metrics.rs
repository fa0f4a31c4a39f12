//! The agent's counters and gauges, in one place, rendered as Prometheus text for `/metrics`.
//!
//! Plain atomics in one static ([`METRICS`]): recording is a relaxed `fetch_add`, done once per
//! batch, not per line, on the hot paths. Labels are low-cardinality and fixed: the output kind,
//! the drop reason, and the configured forward servers (registered once at start).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::config::OutputKind;

/// Why records were lost. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The interceptor could not hand a copy over (LOSS frames: socket full, agent away).
    InterceptorLoss,
    /// The ring was full when the program wrote (ring header counters).
    RingFull,
    /// A ring record was reserved and never committed (a killed thread); skipped after a timeout.
    RingAbandoned,
    /// A peer sent something unreadable and was disconnected (counted in peers, bytes unknown).
    BadPeer,
    /// An output gave up on a chunk (`retry_limit` reached, or a permanent error).
    OutputGaveUp,
    /// Unacknowledged at exit after the grace period, with no storage to keep it in.
    Shutdown,
    /// A chunk file under `storage_path` could not be read back (damaged or removed).
    StorageDamaged,
}

const REASONS: [DropReason; 7] = [
    DropReason::InterceptorLoss,
    DropReason::RingFull,
    DropReason::RingAbandoned,
    DropReason::BadPeer,
    DropReason::OutputGaveUp,
    DropReason::Shutdown,
    DropReason::StorageDamaged,
];

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::InterceptorLoss => "interceptor_loss",
            DropReason::RingFull => "ring_full",
            DropReason::RingAbandoned => "ring_abandoned",
            DropReason::BadPeer => "bad_peer",
            DropReason::OutputGaveUp => "output_gave_up",
            DropReason::Shutdown => "shutdown",
            DropReason::StorageDamaged => "storage_damaged",
        }
    }
}

const OUTPUTS: [OutputKind; 3] = [OutputKind::Stdout, OutputKind::Forward, OutputKind::Null];

/// Per-output counters.
#[derive(Default)]
pub struct OutputMetrics {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub chunks_sent: AtomicU64,
    pub chunks_acked: AtomicU64,
    pub chunks_retried: AtomicU64,
}

/// Per-reason drop counters.
#[derive(Default)]
pub struct DropMetrics {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

/// Every metric of the agent.
pub struct Metrics {
    /// Lines/records made by the inputs.
    pub records_in: AtomicU64,
    /// Bytes tapped (or received by the forward input).
    pub bytes_in: AtomicU64,
    outputs: [OutputMetrics; 3],
    drops: [DropMetrics; REASONS.len()],
    /// Bytes and chunks held in the buffer, not yet delivered by every output.
    pub buffer_bytes: AtomicI64,
    pub buffer_chunks: AtomicI64,
    /// Connected tap peers now, and since start.
    pub peers: AtomicI64,
    pub peers_total: AtomicU64,
    /// Peers dropped for a bad frame or an inconsistent ring.
    pub peers_rejected: AtomicU64,
    /// Ring records read a second time after an agent restart (possible duplicates).
    pub ring_records_reread: AtomicU64,
    /// Peers refused at accept by `socket_uid` / `socket_gid`.
    pub peers_refused: AtomicU64,
    /// Peers dropped for a HELLO pid other than the kernel's (`SO_PEERCRED`).
    pub peers_pid_mismatch: AtomicU64,
    /// Peers whose pid the agent cannot see (another PID namespace): pid and cgroup unchecked.
    pub peers_pid_not_visible: AtomicU64,
    /// Peers whose records carry unverified pod names (`meta_claimed: true`).
    pub peers_meta_claimed: AtomicU64,
    /// Peers whose claimed pod names contradicted the verified ones (the claims were dropped).
    pub peers_meta_contradicted: AtomicU64,
    /// Times the descriptor limit stopped a tap peer (EMFILE/ENFILE, descriptors cut).
    pub tap_fd_limit: AtomicU64,
    /// Chunks that could not be written under `storage_path` (kept in memory instead).
    pub storage_write_errors: AtomicU64,
    /// Chunks held on disk only (beyond `mem_buf_limit`), waiting to be loaded and sent.
    pub spilled_chunks: AtomicI64,
    /// Chunks spilled since start.
    pub spilled_chunks_total: AtomicU64,
    upstreams: Mutex<Vec<(String, &'static AtomicI64)>>,
}

/// One counter of an output's or a drop reason's group, as a family of the exposition reads it.
type Field<M> = fn(&M) -> &AtomicU64;

/// The per-output counter families, in exposition order: name, help, counter.
const OUTPUT_FAMILIES: [(&str, &str, Field<OutputMetrics>); 5] = [
    (
        "logtap_output_records_total",
        "Records delivered by each output.",
        |m| &m.records,
    ),
    (
        "logtap_output_bytes_total",
        "Bytes delivered by each output.",
        |m| &m.bytes,
    ),
    (
        "logtap_output_chunks_sent_total",
        "Chunks sent (first sends and resends).",
        |m| &m.chunks_sent,
    ),
    (
        "logtap_output_chunks_acked_total",
        "Chunks acknowledged (delivered).",
        |m| &m.chunks_acked,
    ),
    (
        "logtap_output_chunks_retried_total",
        "Chunks sent again after a failure.",
        |m| &m.chunks_retried,
    ),
];

/// The per-reason drop counter families, in exposition order: name, help, counter.
const DROP_FAMILIES: [(&str, &str, Field<DropMetrics>); 2] = [
    (
        "logtap_dropped_records_total",
        "Records lost, by reason.",
        |d| &d.records,
    ),
    (
        "logtap_dropped_bytes_total",
        "Bytes lost, by reason.",
        |d| &d.bytes,
    ),
];

impl OutputMetrics {
    /// All counters at zero; `const` so that the static can be built from it.
    const fn zeroed() -> Self {
        OutputMetrics {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            chunks_sent: AtomicU64::new(0),
            chunks_acked: AtomicU64::new(0),
            chunks_retried: AtomicU64::new(0),
        }
    }
}

impl DropMetrics {
    /// Both counters at zero; `const` so that the static can be built from it.
    const fn zeroed() -> Self {
        DropMetrics {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

/// The one instance.
pub static METRICS: Metrics = Metrics {
    records_in: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    // An inline `const` may be repeated although the atomics are not `Copy`: each element is
    // a fresh zeroed value.
    outputs: [const { OutputMetrics::zeroed() }; 3],
    drops: [const { DropMetrics::zeroed() }; REASONS.len()],
    buffer_bytes: AtomicI64::new(0),
    buffer_chunks: AtomicI64::new(0),
    peers: AtomicI64::new(0),
    peers_total: AtomicU64::new(0),
    peers_rejected: AtomicU64::new(0),
    ring_records_reread: AtomicU64::new(0),
    peers_refused: AtomicU64::new(0),
    peers_pid_mismatch: AtomicU64::new(0),
    peers_pid_not_visible: AtomicU64::new(0),
    peers_meta_claimed: AtomicU64::new(0),
    peers_meta_contradicted: AtomicU64::new(0),
    tap_fd_limit: AtomicU64::new(0),
    storage_write_errors: AtomicU64::new(0),
    spilled_chunks: AtomicI64::new(0),
    spilled_chunks_total: AtomicU64::new(0),
    upstreams: Mutex::new(Vec::new()),
};

impl Metrics {
    /// Counters of one output.
    pub fn output(&self, kind: OutputKind) -> &OutputMetrics {
        let i = OUTPUTS.iter().position(|k| *k == kind).unwrap_or(0);
        &self.outputs[i]
    }

    /// Counts a loss.
    pub fn dropped(&self, reason: DropReason, records: u64, bytes: u64) {
        let i = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.drops[i].records.fetch_add(records, Relaxed);
        self.drops[i].bytes.fetch_add(bytes, Relaxed);
    }

    /// Records dropped for `reason` so far.
    pub fn dropped_records(&self, reason: DropReason) -> u64 {
        let i = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.drops[i].records.load(Relaxed)
    }

    /// The up (1) / down (0) gauge of a forward server, registered on first use. Servers are
    /// few and fixed by the configuration, so the gauges are leaked once and live for ever.
    pub fn upstream(&self, server: &str) -> &'static AtomicI64 {
        let mut list = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, g)) = list.iter().find(|(s, _)| s == server) {
            return g;
        }
        let gauge: &'static AtomicI64 = Box::leak(Box::new(AtomicI64::new(0)));
        list.push((server.to_owned(), gauge));
        gauge
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let u = |a: &AtomicU64| i128::from(a.load(Relaxed));
        let i = |a: &AtomicI64| i128::from(a.load(Relaxed));
        let input = [
            (
                "logtap_input_records_total",
                "counter",
                "Records made by the inputs.",
                u(&self.records_in),
            ),
            (
                "logtap_input_bytes_total",
                "counter",
                "Bytes received by the inputs.",
                u(&self.bytes_in),
            ),
        ];
        for (name, kind, help, v) in input {
            family(&mut s, name, kind, help, [(String::new(), v)]);
        }
        for (name, help, field) in OUTPUT_FAMILIES {
            let rows = OUTPUTS.iter().map(|k| {
                let labels = format!("{{output=\"{}\"}}", k.as_str());
                (labels, u(field(self.output(*k))))
            });
            family(&mut s, name, "counter", help, rows);
        }
        for (name, help, field) in DROP_FAMILIES {
            let rows = REASONS.iter().zip(&self.drops).map(|(r, d)| {
                let labels = format!("{{reason=\"{}\"}}", r.as_str());
                (labels, u(field(d)))
            });
            family(&mut s, name, "counter", help, rows);
        }
        let state = [
            (
                "logtap_buffer_bytes",
                "gauge",
                "Bytes of chunks not yet delivered by every output.",
                i(&self.buffer_bytes),
            ),
            (
                "logtap_buffer_chunks",
                "gauge",
                "Chunks not yet delivered by every output.",
                i(&self.buffer_chunks),
            ),
            (
                "logtap_tap_peers",
                "gauge",
                "Processes connected to the tap socket.",
                i(&self.peers),
            ),
            (
                "logtap_tap_peers_total",
                "counter",
                "Processes that connected since start.",
                u(&self.peers_total),
            ),
            (
                "logtap_tap_peers_rejected_total",
                "counter",
                "Peers dropped for bad frames or an inconsistent ring.",
                u(&self.peers_rejected),
            ),
            (
                "logtap_tap_peers_refused_total",
                "counter",
                "Peers refused at accept: uid and gid outside socket_uid / socket_gid.",
                u(&self.peers_refused),
            ),
            (
                "logtap_tap_peers_pid_mismatch_total",
                "counter",
                "Peers dropped for claiming a pid other than the kernel's (SO_PEERCRED).",
                u(&self.peers_pid_mismatch),
            ),
            (
                "logtap_tap_peers_pid_not_visible_total",
                "counter",
                "Peers in a PID namespace the agent cannot see: pid and container unchecked.",
                u(&self.peers_pid_not_visible),
            ),
            (
                "logtap_tap_peers_meta_claimed_total",
                "counter",
                "Peers whose records carry unverified pod names (meta_claimed).",
                u(&self.peers_meta_claimed),
            ),
            (
                "logtap_tap_peers_meta_contradicted_total",
                "counter",
                "Peers whose claimed pod names contradicted the verified ones (claims dropped).",
                u(&self.peers_meta_contradicted),
            ),
            (
                "logtap_tap_fd_limit_total",
                "counter",
                "Times the descriptor limit (RLIMIT_NOFILE) stopped a tap peer.",
                u(&self.tap_fd_limit),
            ),
            (
                "logtap_ring_records_reread_total",
                "counter",
                "Ring records read again after an agent restart (possible duplicates).",
                u(&self.ring_records_reread),
            ),
            (
                "logtap_storage_write_errors_total",
                "counter",
                "Chunks that could not be written under storage_path (kept in memory).",
                u(&self.storage_write_errors),
            ),
            (
                "logtap_buffer_spilled_chunks",
                "gauge",
                "Chunks held on disk only, beyond mem_buf_limit, waiting to be sent.",
                i(&self.spilled_chunks),
            ),
            (
                "logtap_storage_spilled_chunks_total",
                "counter",
                "Chunks that waited on disk only (memory full) since start.",
                u(&self.spilled_chunks_total),
            ),
        ];
        for (name, kind, help, v) in state {
            family(&mut s, name, kind, help, [(String::new(), v)]);
        }
        let upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        let rows = upstreams
            .iter()
            .map(|(server, g)| (format!("{{server=\"{}\"}}", escape(server)), i(g)));
        let help = "1 while the forward server is connected.";
        family(&mut s, "logtap_upstream_up", "gauge", help, rows);
        s
    }
}

/// Writes one metric family: its `# HELP` and `# TYPE` header, then one sample per row
/// (`labels` is the whole `{...}` part, or empty for an unlabelled sample).
fn family(
    s: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    rows: impl IntoIterator<Item = (String, i128)>,
) {
    // Writing to a String cannot fail.
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in rows {
        let _ = writeln!(s, "{name}{labels} {v}");
    }
}

impl DropReason {
    /// Whether the drop happened in a tapped process (ring counters, LOSS frames): each peer
    /// logs those itself, with the process's pid and comm (`input::drop_log`).
    pub fn in_peer(self) -> bool {
        matches!(
            self,
            DropReason::InterceptorLoss | DropReason::RingFull | DropReason::RingAbandoned
        )
    }

    /// What was dropped for this reason, and why, for the one line `logtap run` prints at exit.
    /// The interceptor counts writes (ring records, DATA frames), the ring abandoned records,
    /// the outputs records (lines).
    fn explained(self, n: u64, bytes: u64) -> String {
        match self {
            DropReason::RingFull => format!(
                "{n} writes ({bytes} bytes): ring full, the program wrote faster than the agent \
                 read (LLT_RING_FULL=drop, or the agent did not drain for 200 ms)"
            ),
            DropReason::InterceptorLoss => format!(
                "{n} writes ({bytes} bytes): not handed over, no connection to the agent or its \
                 socket full"
            ),
            DropReason::RingAbandoned => {
                format!("{n} ring records: abandoned mid-write by a writer that was killed")
            }
            DropReason::BadPeer => format!("{n} processes: dropped for sending bad data"),
            DropReason::OutputGaveUp => {
                format!("{n} records ({bytes} bytes): given up by an output (retry_limit)")
            }
            DropReason::Shutdown => format!("{n} records ({bytes} bytes): undelivered at exit"),
            DropReason::StorageDamaged => {
                format!("{n} records ({bytes} bytes): in a chunk file that could not be read back")
            }
        }
    }
}

/// The line `logtap run` prints on stderr at exit when something was lost (`None` if
/// nothing was): how many writes or records, how many bytes, and why.
pub fn drop_summary() -> Option<String> {
    let parts: Vec<String> = REASONS
        .iter()
        .zip(&METRICS.drops)
        .map(|(r, d)| (*r, d.records.load(Relaxed), d.bytes.load(Relaxed)))
        .filter(|(_, n, _)| *n > 0)
        .map(|(r, n, bytes)| r.explained(n, bytes))
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!("logtap: dropped {}", parts.join("; ")))
}

/// Logs, once per `interval`, the drops counted since the last report — one line per reason
/// that grew, however many chunks the drops came from (the counters keep the totals). Drops in
/// tapped processes are left to their peers, which log them with the process's pid and comm.
pub async fn report_drops(interval: std::time::Duration) {
    let mut last = [0u64; REASONS.len()];
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (i, reason) in REASONS.iter().enumerate() {
            if reason.in_peer() {
                continue;
            }
            let now = METRICS.drops[i].records.load(Relaxed);
            if now > last[i] {
                tracing::warn!(
                    reason = reason.as_str(),
                    records = now - last[i],
                    bytes_total = METRICS.drops[i].bytes.load(Relaxed),
                    records_total = now,
                    "records lost since the last report (logtap_dropped_records_total)"
                );
                last[i] = now;
            }
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        METRICS
            .output(OutputKind::Null)
            .records
            .fetch_add(5, Relaxed);
        METRICS.dropped(DropReason::RingFull, 2, 20);
        METRICS.upstream("127.0.0.1:24224").store(1, Relaxed);
        let text = METRICS.render();
        assert!(text.contains("# TYPE logtap_output_records_total counter"));
        assert!(
            text.contains("logtap_output_records_total{output=\"null\"} 5"),
            "{text}"
        );
        assert!(text.contains("logtap_dropped_records_total{reason=\"ring_full\"} 2"));
        assert!(text.contains("logtap_dropped_bytes_total{reason=\"ring_full\"} 20"));
        assert!(text.contains("logtap_upstream_up{server=\"127.0.0.1:24224\"} 1"));
        let line = drop_summary().unwrap();
        assert!(line.starts_with("logtap: "), "{line}");
        assert!(line.contains(" writes (20 bytes): ring full,"), "{line}");
        assert!(!line.contains('\n'), "one line");
        assert!(std::ptr::eq(
            METRICS.upstream("127.0.0.1:24224"),
            METRICS.upstream("127.0.0.1:24224")
        ));
    }
}
