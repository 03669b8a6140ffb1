//! Mail delivery: the SMTP transport (lettre, rustls) and the outbox's
//! sender, a background task on every node that leases due mails from the
//! store, sends them, and marks each sent or due again with backoff. A
//! request never waits for SMTP: it only queues (API.md §11).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use latchkey_core::mail::OutboxMail;
use latchkey_core::store::MailClaim;
use latchkey_core::{Clock, Service};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpUrl;
use crate::metrics::Metrics;

/// One SMTP conversation may take this long before it counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// An SMTP server and the sender of latchkey's mails.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The host of an `smtp(s)://[user[:pass]@]host[:port]` URL, for TLS.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    host_port.split(':').next().unwrap_or_default()
}

impl Mailer {
    pub fn new(smtp_url: &SmtpUrl, from: &str) -> anyhow::Result<Self> {
        let url = smtp_url.as_str();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("invalid setting smtp_url")?;
        // `smtp://` upgrades with STARTTLS whenever the server offers it
        // (lettre's own reading of a bare smtp:// is plain text only).
        if !smtp_url.implicit_tls() && !url.contains("tls=") {
            let tls = TlsParameters::new(host_of(url).to_owned())
                .context("invalid setting smtp_url: TLS parameters")?;
            builder = builder.tls(Tls::Opportunistic(tls));
        }
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("invalid setting mail_from: {from:?}"))?;
        Ok(Self {
            transport: builder.timeout(Some(SMTP_TIMEOUT)).build(),
            from,
        })
    }

    /// Hands one mail (plain text and HTML alternatives) to the server.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: &str,
    ) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// When a failed mail is tried again, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After the first failure; doubled after each next one.
    pub first: Duration,
    pub max: Duration,
    /// Counted from the first attempt; then the mail is given up.
    pub give_up_after: Duration,
    /// How often the store is looked at for mails queued by other nodes
    /// (this node's own wake the sender at once).
    pub poll: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(10 * 60),
            poll: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failure (1: the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Mails leased per look at the store.
const CLAIM_BATCH: u32 = 16;
/// A leased mail goes to another sender if this one has not answered by then.
const LEASE: Duration = Duration::from_secs(120);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The outbox's sender: runs until aborted. Its clock is the wall clock
/// (`clock`), not the service's: retries are about real SMTP outages.
pub async fn run_outbox(
    service: Arc<Service>,
    mailer: Arc<Mailer>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
) {
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        let now = clock.now();
        let claim = MailClaim {
            now,
            lease_until: now + LEASE,
            deliver_by: now + backoff.give_up_after,
            limit: CLAIM_BATCH,
        };
        let claimed = match service.store().claim_mail(claim).await {
            Ok(mails) => mails,
            Err(e) => {
                tracing::warn!(error = %e, "mail outbox not read");
                Vec::new()
            }
        };
        let full = claimed.len() == CLAIM_BATCH as usize;
        for mail in claimed {
            deliver(&service, &mailer, &metrics, clock.as_ref(), &backoff, mail).await;
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            if let Err(e) = service.prune_mail(clock.now()).await {
                tracing::warn!(error = %e, "mail prune failed");
            }
        }
        if !full {
            tokio::select! {
                () = service.mail_queued() => {}
                () = tokio::time::sleep(backoff.poll) => {}
            }
        }
    }
}

async fn deliver(
    service: &Service,
    mailer: &Mailer,
    metrics: &Metrics,
    clock: &dyn Clock,
    backoff: &Backoff,
    mail: OutboxMail,
) {
    let sent = mailer
        .send(
            &mail.recipient,
            &mail.subject,
            &mail.text_body,
            &mail.html_body,
        )
        .await;
    let now = clock.now();
    let recorded = match sent {
        Ok(()) => {
            metrics.mail_sent();
            tracing::info!(mail_id = %mail.id, attempts = mail.attempts + 1, "mail sent");
            service.store().mail_sent(&mail.id, now).await
        }
        Err(error) => {
            metrics.mail_failed();
            let retry_at = now + backoff.delay(mail.attempts + 1);
            tracing::warn!(mail_id = %mail.id, attempts = mail.attempts + 1, %error, "mail not sent: retried later");
            service
                .store()
                .mail_failed(&mail.id, now, Some(retry_at), &error)
                .await
        }
    };
    if let Err(e) = recorded {
        // The lease runs out and the mail is tried again: at worst sent twice.
        tracing::warn!(error = %e, mail_id = %mail.id, "mail outcome not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_comes_within_30_s_and_the_waits_double_to_a_cap() {
        let b = Backoff::default();
        assert!(b.delay(1) <= Duration::from_secs(30));
        assert_eq!(b.delay(2), b.delay(1) * 2);
        assert_eq!(b.delay(30), b.max);
        assert_eq!(b.give_up_after, Duration::from_secs(600));
    }

    #[test]
    fn hosts_of_smtp_urls() {
        assert_eq!(host_of("smtp://mail.example.com"), "mail.example.com");
        assert_eq!(
            host_of("smtps://u:p@mail.example.com:465"),
            "mail.example.com"
        );
        assert_eq!(host_of("smtp://u@[::1]:25"), "::1");
    }
}
