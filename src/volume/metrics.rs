//! Prometheus metrics of one side (`--metrics-listen ADDR`), after the ones VolSync exports:
//! when the last good iteration ended, how long iterations take, intervals missed because an
//! iteration overran `--every`, whether the volume is out of sync (a failed iteration, one
//! that read changing files, or one that left paths unread or attributes unset), and what
//! was sent.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

pub struct VolumeMetrics {
    registry: std::sync::Mutex<Registry>,
    last_sync: Gauge<f64, AtomicU64>,
    duration: Histogram,
    missed: Counter,
    out_of_sync: Gauge,
    iterations: Family<Outcome, Counter>,
    files_sent: Counter,
    bytes_sent: Counter,
    wire_bytes: Counter,
    snapshots: Gauge,
}

impl VolumeMetrics {
    /// Metrics labelled with the side (`source` or `destination`) and the directory.
    pub fn new(role: &str, volume: &str) -> Arc<Self> {
        let labels = [
            (Cow::Borrowed("role"), Cow::Owned(role.to_owned())),
            (Cow::Borrowed("volume"), Cow::Owned(volume.to_owned())),
        ];
        let mut r = Registry::with_prefix_and_labels("ferry_volume", labels.into_iter());
        let m = VolumeMetrics {
            registry: std::sync::Mutex::new(Registry::default()),
            last_sync: Gauge::default(),
            duration: Histogram::new(exponential_buckets(0.1, 2.0, 14)),
            missed: Counter::default(),
            out_of_sync: Gauge::default(),
            iterations: Family::default(),
            files_sent: Counter::default(),
            bytes_sent: Counter::default(),
            wire_bytes: Counter::default(),
            snapshots: Gauge::default(),
        };
        // Out of sync until the first good iteration.
        m.out_of_sync.set(1);
        r.register(
            "last_sync_timestamp_seconds",
            "When the last good iteration ended (Unix time)",
            m.last_sync.clone(),
        );
        r.register(
            "sync_duration_seconds",
            "How long iterations take",
            m.duration.clone(),
        );
        r.register(
            "missed_intervals",
            "Intervals skipped because an iteration overran --every",
            m.missed.clone(),
        );
        r.register(
            "out_of_sync",
            "1 when the last iteration failed, read files that were changing, or left paths behind",
            m.out_of_sync.clone(),
        );
        r.register("iterations", "Iterations by outcome", m.iterations.clone());
        r.register(
            "files_sent",
            "Files whose content was sent",
            m.files_sent.clone(),
        );
        r.register("bytes_sent", "File bytes sent", m.bytes_sent.clone());
        r.register("wire_bytes", "Bytes on the network", m.wire_bytes.clone());
        if role == "destination" {
            r.register("snapshots", "Snapshots kept", m.snapshots.clone());
        }
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = r;
        Arc::new(m)
    }

    /// Records one iteration.
    pub fn iteration(
        &self,
        ok: bool,
        consistent: bool,
        took: Duration,
        files_sent: u64,
        bytes_sent: u64,
        wire_bytes: u64,
    ) {
        self.duration.observe(took.as_secs_f64());
        let outcome = if ok { "ok" } else { "failed" };
        self.iterations
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
        self.files_sent.inc_by(files_sent);
        self.bytes_sent.inc_by(bytes_sent);
        self.wire_bytes.inc_by(wire_bytes);
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_sync.set(now);
        }
        self.out_of_sync.set(i64::from(!(ok && consistent)));
    }

    pub fn missed_interval(&self) {
        self.missed.inc();
    }

    pub fn set_snapshots(&self, n: usize) {
        self.snapshots.set(n as i64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` in the background; returns the bound address.
pub async fn serve(addr: &str, m: Arc<VolumeMetrics>) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-listen {addr}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = m.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the metrics listener stopped: {e}");
        }
    });
    Ok(bound)
}
