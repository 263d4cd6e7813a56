//! Logs and metrics: tracing setup, and the Prometheus registry served at `/metrics`.
//!
//! Owns metric names and labels. Request metrics are recorded per S3 operation by the
//! gateway; the admin server renders the registry.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Sets up logging to stderr; `RUST_LOG` / `FERRY_LOG` choose the level (default `info`).
pub fn init_logging() {
    let filter = std::env::var("FERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn,s3s=warn,hyper=warn,aws=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOnly {
    op: String,
}

/// The process's metrics.
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    requests: Family<OpLabels, Counter>,
    latency: Family<OpOnly, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("ferry");
        let requests = Family::<OpLabels, Counter>::default();
        let latency = Family::<OpOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        registry.register(
            "s3_requests",
            "S3 requests by operation and outcome",
            requests.clone(),
        );
        registry.register(
            "s3_request_seconds",
            "S3 request latency by operation",
            latency.clone(),
        );
        registry.register(
            "s3_received_bytes",
            "Object bytes received from clients",
            bytes_in.clone(),
        );
        registry.register(
            "s3_sent_bytes",
            "Object bytes sent to clients",
            bytes_out.clone(),
        );
        Arc::new(Self {
            registry: std::sync::Mutex::new(registry),
            requests,
            latency,
            bytes_in,
            bytes_out,
        })
    }

    pub fn observe(&self, op: &str, ok: bool, started: Instant) {
        let outcome = if ok { "ok" } else { "error" };
        self.requests
            .get_or_create(&OpLabels {
                op: op.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&OpOnly { op: op.to_owned() })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        }
        out
    }
}
