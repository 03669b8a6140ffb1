//! Prometheus metrics: requests and their latency per route and status,
//! security events by kind, live sessions, the password-hashing queue.

use std::time::Duration;

use latchkey_core::service::EventSink;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/v1/sessions/{sid}`) or `unmatched`, never the raw path.
    pub route: String,
    /// A standard method or `other`.
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    events: Family<EventLabels, Counter>,
    live_sessions: Gauge,
    password_queue: Gauge,
    feed_subscribers: Gauge,
    mails_sent: Counter,
    mail_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 100 us to about 3.3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route, method and status",
            latency.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "security_events",
            "Security events of the audit log: logins ok and failed, refreshes, reuse detected by case, logouts, revocations, password changes, key rotations",
            events.clone(),
        );
        let live_sessions = Gauge::default();
        registry.register(
            "live_sessions",
            "Sessions neither revoked nor expired",
            live_sessions.clone(),
        );
        let password_queue = Gauge::default();
        registry.register(
            "password_queue_depth",
            "Password hashes running or waiting",
            password_queue.clone(),
        );
        let feed_subscribers = Gauge::default();
        registry.register(
            "revocation_feed_subscribers",
            "Streams of the revocation feed open on this node",
            feed_subscribers.clone(),
        );
        let mails_sent = Counter::default();
        registry.register(
            "mails_sent",
            "Mails the SMTP server accepted",
            mails_sent.clone(),
        );
        let mail_failures = Counter::default();
        registry.register(
            "mail_failures",
            "Attempts to send a mail that failed (each is retried with backoff for 10 minutes)",
            mail_failures.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            events,
            live_sessions,
            password_queue,
            feed_subscribers,
            mails_sent,
            mail_failures,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, labels: RequestLabels, elapsed: Duration) {
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    pub fn mail_sent(&self) {
        self.mails_sent.inc();
    }

    pub fn mail_failed(&self) {
        self.mail_failures.inc();
    }

    /// The exposition, with the gauges read now.
    pub fn render(&self, live_sessions: Option<u64>, password_queue: usize) -> String {
        if let Some(n) = live_sessions {
            self.live_sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.password_queue
            .set(i64::try_from(password_queue).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Counts one open feed stream while it lives.
pub struct Subscribed(Gauge);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn feed_subscribed(&self) -> Subscribed {
        self.feed_subscribers.inc();
        Subscribed(self.feed_subscribers.clone())
    }
}

impl EventSink for Metrics {
    fn event(&self, event: &str) {
        self.events
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }
}
