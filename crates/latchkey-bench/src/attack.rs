//! The attacker of `abuse`: on its own thread and runtime (so that its work
//! does not slow the normal client's measurement), as fast as the server
//! answers, alternately (a) a request whose method is thousands of random
//! letters, to a random path, and (b) a form of thousands of distinct
//! parameters to the OAuth endpoints.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use tokio::time::{sleep, timeout, Instant};

use crate::client::{Body, Conn, Endpoint, Req};
use crate::report::new_histogram;

/// The form attack's targets, in turn.
pub const FORM_PATHS: [&str; 3] = ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"];

/// `a=&b=&...`: as many distinct, empty parameters as fit in `max_bytes`,
/// with the shortest names first (1 to 3 of `[0-9A-Za-z]`): 13,901 in
/// 64 KiB. Returns the body and its parameter count.
pub fn form_body(max_bytes: usize) -> (Bytes, usize) {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut body = Vec::with_capacity(max_bytes);
    let mut count = 0usize;
    let mut name = Vec::with_capacity(4);
    'lengths: for len in 1..=4u32 {
        let total = ALPHABET.len().pow(len);
        for mut n in 0..total {
            name.clear();
            for _ in 0..len {
                name.push(ALPHABET[n % ALPHABET.len()]);
                n /= ALPHABET.len();
            }
            let sep = usize::from(!body.is_empty());
            if body.len() + sep + name.len() + 1 > max_bytes {
                break 'lengths;
            }
            if sep == 1 {
                body.push(b'&');
            }
            body.extend_from_slice(&name);
            body.push(b'=');
            count += 1;
        }
    }
    (Bytes::from(body), count)
}

/// A small, fast pseudo-random generator (xorshift64*); no need for more.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn seeded(stream: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(now ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `len` random ASCII letters (upper and lower case).
    pub fn letters(&mut self, len: usize) -> Vec<u8> {
        const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next();
            for byte in word.to_le_bytes().iter().take(len - out.len()) {
                out.push(LETTERS[usize::from(*byte) % LETTERS.len()]);
            }
        }
        out
    }
}

/// What one kind of attack request got.
pub struct AttackStats {
    pub sent: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub timeouts: u64,
    /// Time to the answer of those answered.
    pub hist: Histogram<u64>,
    pub first_error: Option<String>,
}

impl AttackStats {
    fn new() -> Result<Self> {
        Ok(Self {
            sent: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            timeouts: 0,
            hist: new_histogram()?,
            first_error: None,
        })
    }

    fn add(&mut self, other: &Self) -> Result<()> {
        self.sent += other.sent;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.hist.add(&other.hist)?;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }

    /// `404: 10, transport: 1`.
    pub fn answers(&self) -> String {
        crate::report::status_summary(
            &self.statuses,
            &[
                ("transport error", self.transport_errors),
                ("no answer", self.timeouts),
            ],
        )
    }
}

/// The whole attack's result.
pub struct AttackReport {
    /// (a) the long random methods.
    pub methods: AttackStats,
    /// (b) the forms.
    pub forms: AttackStats,
    /// TCP connections the attacker opened.
    pub connects: u64,
    /// From the first request to the last answer.
    pub seconds: f64,
}

#[derive(Clone)]
pub struct Attack {
    pub endpoint: Endpoint,
    pub connections: usize,
    pub method_len: usize,
    pub form: Bytes,
    pub request_timeout: Duration,
    /// No new request after this, nor once `stop` is set.
    pub end: Instant,
    pub stop: Arc<AtomicBool>,
}

impl Attack {
    /// Runs the attack on a thread of its own; the result comes through the
    /// returned channel when it ends.
    pub fn spawn(self) -> tokio::sync::oneshot::Receiver<Result<AttackReport>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the attacker's runtime")
                .and_then(|rt| rt.block_on(self.run()));
            let _ = tx.send(result);
        });
        rx
    }

    async fn run(self) -> Result<AttackReport> {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.connections {
            tasks.spawn(self.clone().one(i as u64));
        }
        let mut report = AttackReport {
            methods: AttackStats::new()?,
            forms: AttackStats::new()?,
            connects: 0,
            seconds: 0.0,
        };
        while let Some(joined) = tasks.join_next().await {
            let (methods, forms, connects) = joined??;
            report.methods.add(&methods)?;
            report.forms.add(&forms)?;
            report.connects += connects;
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    async fn one(self, stream: u64) -> Result<(AttackStats, AttackStats, u64)> {
        let mut rng = Rng::seeded(stream);
        let mut conn = Conn::new(self.endpoint.clone());
        let mut methods = AttackStats::new()?;
        let mut forms = AttackStats::new()?;
        // Even turns send a method, odd ones a form (to each path in turn).
        let mut turn = 0usize;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < self.end {
            let t0 = Instant::now();
            let (st, result) = if turn & 1 == 0 {
                let method = Method::from_bytes(&rng.letters(self.method_len))?;
                let path = format!("/{}", String::from_utf8_lossy(&rng.letters(12)));
                let req = Req {
                    method,
                    path: &path,
                    bearer: None,
                    basic: None,
                    cookie: None,
                    origin: None,
                    body: None,
                };
                (
                    &mut methods,
                    timeout(self.request_timeout, conn.send(req)).await,
                )
            } else {
                let path = FORM_PATHS[(turn / 2) % FORM_PATHS.len()];
                let req = Req {
                    method: Method::POST,
                    path,
                    bearer: None,
                    basic: None,
                    cookie: None,
                    origin: None,
                    body: Some(Body::Form(self.form.clone())),
                };
                (
                    &mut forms,
                    timeout(self.request_timeout, conn.send(req)).await,
                )
            };
            turn = turn.wrapping_add(1);
            st.sent += 1;
            match result {
                Ok(Ok(answer)) => {
                    *st.statuses.entry(answer.status.as_u16()).or_default() += 1;
                    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    st.hist.saturating_record(us.max(1));
                    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                        st.first_error.get_or_insert_with(|| answer.body_text());
                    }
                }
                Ok(Err(e)) => {
                    st.transport_errors += 1;
                    st.first_error.get_or_insert_with(|| format!("{e:#}"));
                    // A refused connection answers at once: do not spin.
                    sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    st.timeouts += 1;
                    st.first_error.get_or_insert_with(|| {
                        format!("no answer within {:?}", self.request_timeout)
                    });
                }
            }
        }
        Ok((methods, forms, conn.connects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_fills_64_kib_with_distinct_names() {
        let (body, count) = form_body(64 * 1024);
        assert!(body.len() <= 64 * 1024);
        assert!(body.len() > 64 * 1024 - 6, "{}", body.len());
        assert_eq!(count, 13_901);
        let text = std::str::from_utf8(&body).unwrap();
        let names: Vec<&str> = text.split('&').map(|p| p.trim_end_matches('=')).collect();
        assert_eq!(names.len(), count);
        let distinct: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(distinct.len(), count);
        assert!(text.starts_with("0=&1=&"));
        assert!(text.ends_with('='));

        let (small, n) = form_body(10);
        assert_eq!(&small[..], b"0=&1=&2=");
        assert_eq!(n, 3);
    }

    #[test]
    fn methods_are_long_letter_tokens() {
        let mut rng = Rng::new(42);
        let m = rng.letters(8000);
        assert_eq!(m.len(), 8000);
        assert!(m.iter().all(u8::is_ascii_alphabetic));
        // hyper takes it as an extension method.
        let method = Method::from_bytes(&m).unwrap();
        assert_eq!(method.as_str().len(), 8000);
        assert_ne!(rng.letters(16), rng.letters(16));
    }
}
