//! Logs and metrics: tracing setup, the one-line form of an error and its causes, and the
//! Prometheus registry served at `/metrics`.
//!
//! Owns metric names and labels. Request metrics are recorded per S3 operation by the
//! gateway; the admin server renders the registry.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Sets up logging to stderr; `RUST_LOG` / `FERRY_LOG` choose the level (default `info`)
/// and add to [`QUIET`] (see [`log_filter`]).
///
/// By default s3s's request handling is silent: it logs every error answer at ERROR
/// (`s3s::ops`: a 404 or an unsigned request included; `s3s::service`: every 5xx with a dump
/// of the response, a 501 for an operation Ferry does not implement included) and a
/// malformed XML body whole (`s3s::http`), so a server anyone can reach would log little else
/// and a client could fill the log with what it sends. What is the server's own fault is
/// logged by the gateway itself.
pub fn init_logging() {
    let asked = std::env::var("FERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log_filter(&asked)))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// What the other crates log unless asked otherwise.
const QUIET: [&str; 7] = [
    "sqlx=error",
    "s3s=warn",
    "s3s::ops=off",
    "s3s::service=off",
    "s3s::http=off",
    "hyper=warn",
    "aws=warn",
];

/// The filter for `asked` (`FERRY_LOG`): its directives, `info` when it names no level of its
/// own, and [`QUIET`]'s for every crate it does not name. `FERRY_LOG=info` (the documented
/// default) once turned s3s's per-request ERROR lines back on; `s3s=debug` still does.
fn log_filter(asked: &str) -> String {
    let mine: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let target = |d: &str| -> Option<String> {
        let t = d.split(['=', '[']).next().unwrap_or_default();
        // A bare level (`debug`) names no crate.
        let level = ["trace", "debug", "info", "warn", "error", "off"];
        (!t.is_empty() && !level.contains(&t.to_ascii_lowercase().as_str())).then(|| t.to_owned())
    };
    let named: Vec<String> = mine.iter().filter_map(|d| target(d)).collect();
    let mut out: Vec<String> = Vec::new();
    if !mine.iter().any(|d| target(d).is_none()) {
        out.push("info".into());
    }
    for q in QUIET {
        let t = q.split('=').next().unwrap_or_default();
        let overlaps = named.iter().any(|n| {
            let within = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}::"));
            within(t, n)
        });
        if !overlaps {
            out.push(q.into());
        }
    }
    out.extend(mine.iter().map(|d| (*d).to_owned()));
    out.join(",")
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    bucket: String,
    target: String,
}

impl TargetLabels {
    fn new(bucket: &str, target: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            target: target.to_owned(),
        }
    }
}

/// The process's metrics.
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    requests: Family<OpLabels, Counter>,
    latency: Family<OpOnly, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    owed: Family<TargetLabels, Gauge>,
    owed_bytes: Family<TargetLabels, Gauge>,
    oldest_owed: Family<TargetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    synced: Family<TargetLabels, Counter>,
    synced_bytes: Family<TargetLabels, Counter>,
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
        let owed = Family::<TargetLabels, Gauge>::default();
        let owed_bytes = Family::<TargetLabels, Gauge>::default();
        let oldest_owed =
            Family::<TargetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let synced = Family::<TargetLabels, Counter>::default();
        let synced_bytes = Family::<TargetLabels, Counter>::default();
        registry.register(
            "journal_owed_writes",
            "Writes a namespace bucket's target still owes (journal backlog)",
            owed.clone(),
        );
        registry.register(
            "journal_owed_bytes",
            "Bytes of the writes a target still owes",
            owed_bytes.clone(),
        );
        registry.register(
            "journal_oldest_owed_seconds",
            "Age of the oldest write a target owes (0 when none)",
            oldest_owed.clone(),
        );
        registry.register(
            "journal_synced_keys",
            "Keys the catch-up worker brought up to date on a target (rate = catch-up rate)",
            synced.clone(),
        );
        registry.register(
            "journal_synced_bytes",
            "Bytes the catch-up worker copied to a target",
            synced_bytes.clone(),
        );
        Arc::new(Self {
            registry: std::sync::Mutex::new(registry),
            requests,
            latency,
            bytes_in,
            bytes_out,
            owed,
            owed_bytes,
            oldest_owed,
            synced,
            synced_bytes,
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

    /// A target's journal backlog, as last read from the state database.
    pub fn set_backlog(&self, bucket: &str, target: &str, count: i64, bytes: i64, oldest_s: f64) {
        let l = TargetLabels::new(bucket, target);
        self.owed.get_or_create(&l).set(count);
        self.owed_bytes.get_or_create(&l).set(bytes);
        self.oldest_owed.get_or_create(&l).set(oldest_s);
    }

    /// The catch-up worker brought one key of `target` up to date, moving `bytes`.
    pub fn synced(&self, bucket: &str, target: &str, bytes: u64) {
        let l = TargetLabels::new(bucket, target);
        self.synced.get_or_create(&l).inc();
        self.synced_bytes.get_or_create(&l).inc_by(bytes);
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

/// An error and its causes on one line, each said once: a cause whose text an outer message
/// already quotes (sqlx's "error returned from database: X" above X) is left out.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !s.is_empty() && !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_quiet_directives_stay_unless_their_crate_is_named() {
        let quiet =
            "sqlx=error,s3s=warn,s3s::ops=off,s3s::service=off,s3s::http=off,hyper=warn,aws=warn";
        assert_eq!(log_filter(""), format!("info,{quiet}"));
        assert_eq!(log_filter("info"), format!("{quiet},info"));
        assert_eq!(log_filter("debug"), format!("{quiet},debug"));
        // Naming s3s takes every s3s default away; naming one module, that module's (the
        // crate's own default stays for its other modules).
        assert_eq!(
            log_filter("debug,s3s=debug"),
            "sqlx=error,hyper=warn,aws=warn,debug,s3s=debug"
        );
        assert_eq!(
            log_filter("s3s::ops=info"),
            "info,sqlx=error,s3s=warn,s3s::service=off,s3s::http=off,hyper=warn,aws=warn,s3s::ops=info"
        );
        assert_eq!(
            log_filter("ferry=debug"),
            format!("info,{quiet},ferry=debug")
        );
    }
}
