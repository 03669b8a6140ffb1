//! Start-up: open the store, build the service, bind, serve until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use latchkey_core::crypto::RefreshSecret;
use latchkey_core::policy::KEY_PICKUP_INTERVAL;
use latchkey_core::store::Store;
use latchkey_core::{Clock, Service};
use latchkey_store_postgres::{PostgresSettings, PostgresStore};
use latchkey_store_sqlite::{Durability, SqliteSettings, SqliteStore};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::cookies::CookieSettings;
use crate::http::listener::{ConnectionLimits, GuardedListener, MakeTracked};
use crate::http::{self, AppState, HttpSettings};
use crate::mail::{Backoff, Mailer};
use crate::metrics::Metrics;

/// How long requests in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often, at most, the live-sessions gauge is recounted (a scrape never
/// counts).
const LIVE_SESSIONS_RECOUNT: Duration = Duration::from_secs(60);

/// Opens the store named by `database_url` and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.is_postgres() {
        let settings = PostgresSettings {
            max_connections: config.database_max_connections,
            acquire_timeout: config.database_acquire_timeout,
            statement_timeout: config.database_statement_timeout,
        };
        let store = PostgresStore::connect_lazy(&config.database_url, &settings)
            .context("bad PostgreSQL URL")?;
        store
            .migrate()
            .await
            .context("cannot migrate the PostgreSQL store")?;
        return Ok(Arc::new(store));
    }
    let settings = SqliteSettings {
        durability: if config.sqlite_synchronous_full {
            Durability::Full
        } else {
            Durability::Normal
        },
        writer_cache_kib: config.sqlite_cache_mib.saturating_mul(1024),
        ..SqliteSettings::default()
    };
    let store = SqliteStore::connect(&config.database_url, &settings)
        .await
        .with_context(|| format!("cannot open {}", config.database_url))?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// The refresh-token MAC secret: derived from `master_key` when set (so the
/// database alone mints nothing); else the store's own, kept where its
/// engine keeps secrets.
pub async fn refresh_secret(config: &Config, store: &dyn Store) -> anyhow::Result<RefreshSecret> {
    if let Some(master) = &config.master_key {
        return Ok(RefreshSecret::new(
            master.derive("refresh-token-mac")?.as_ref(),
        ));
    }
    Ok(RefreshSecret::new(&store.refresh_secret().await?))
}

/// Whether a file's mode lets its group or others in.
fn shared_with_others(path: &std::path::Path) -> anyhow::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(meta.permissions().mode() & 0o077 != 0)
}

/// Builds the service for an issuer (the CLI uses it without serving).
pub async fn build_service(
    config: &Config,
    issuer: String,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Service> {
    let store = open_store(config).await?;
    let secret = refresh_secret(config, store.as_ref()).await?;
    Ok(Service::new(
        store,
        clock,
        config.policy_for(issuer)?,
        secret,
        config.master_key.clone(),
    )?)
}

/// A bound, ready server.
pub struct Application {
    listener: GuardedListener,
    address: SocketAddr,
    state: AppState,
    prune_interval: Duration,
    stopping: tokio::sync::watch::Sender<bool>,
    /// With `smtp_url`: the outbox's sender runs beside the server.
    mailer: Option<Arc<Mailer>>,
}

impl Application {
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let issuer = config.resolve_issuer(address)?;
        let allowed_origins = config.allowed_origins_for(&issuer);
        let metrics = Arc::new(Metrics::default());
        let mailer = match &config.smtp_url {
            Some(url) => Some(Arc::new(Mailer::new(url, &config.mail_from_for(&issuer))?)),
            None => None,
        };
        let service = Arc::new(
            build_service(config, issuer, clock)
                .await?
                .with_events(metrics.clone()),
        );
        service.ensure_signing_key().await?;
        warn_of_exposed_secrets(config, &service).await?;
        service.recount_live_sessions().await?;
        service.start_revocation_feed().await?;
        let http = HttpSettings {
            cookies: CookieSettings {
                access_name: config.access_cookie.clone(),
                refresh_name: config.refresh_cookie.clone(),
                secure: config.cookie_secure,
                domain: config.cookie_domain.clone(),
            },
            allowed_origins,
            trusted_proxies: config.trusted_proxies.clone(),
            jwks_max_age: config.policy.jwks_max_age,
            body_timeout: config.request_body_timeout,
        };
        let limits = ConnectionLimits {
            max_connections: config.max_connections,
            header_read: config.header_read_timeout,
            keep_alive: config.keep_alive_timeout,
            ..ConnectionLimits::default()
        };
        let (stopping, shutdown) = tokio::sync::watch::channel(false);
        Ok(Self {
            listener: GuardedListener::new(listener, limits),
            address,
            state: AppState::new(service, http, metrics, shutdown),
            prune_interval: config.prune_interval,
            stopping,
            mailer,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn service(&self) -> Arc<Service> {
        self.state.service.clone()
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish
    /// (up to 10 s).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = self.state.service.clone();
        let reloader = tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEY_PICKUP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.reload_keys().await {
                    tracing::warn!(error = %e, "signing keys not reloaded");
                }
            }
        });
        let service = self.state.service.clone();
        let prune_interval = self.prune_interval;
        let pruner = tokio::spawn(async move {
            let mut tick = tokio::time::interval(prune_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match service.prune().await {
                    Ok(p) => tracing::info!(
                        sessions = p.sessions,
                        audit_rows = p.audit_rows,
                        login_failures = p.login_failures,
                        mfa_logins = p.mfa_logins,
                        keys = p.keys,
                        revocations = p.revocations,
                        webauthn_challenges = p.webauthn_challenges,
                        longest_batch_ms = p.longest_batch.as_millis() as u64,
                        took_ms = p.took.as_millis() as u64,
                        "pruned"
                    ),
                    Err(e) => tracing::warn!(error = %e, "prune failed"),
                }
            }
        });
        let service = self.state.service.clone();
        let recounter = tokio::spawn(async move {
            let mut wait = LIVE_SESSIONS_RECOUNT;
            loop {
                tokio::time::sleep(wait).await;
                let started = tokio::time::Instant::now();
                if let Err(e) = service.recount_live_sessions().await {
                    tracing::warn!(error = %e, "live sessions not recounted");
                }
                // The count scans the sessions: on a large store it waits
                // longer, so that it never takes more than 1% of the time.
                wait = LIVE_SESSIONS_RECOUNT.max(started.elapsed() * 100);
            }
        });
        let service = self.state.service.clone();
        let feed = tokio::spawn(async move { service.run_revocation_feed().await });
        let outbox = self.mailer.map(|mailer| {
            let (service, metrics) = (self.state.service.clone(), self.state.metrics.clone());
            let wall: Arc<dyn Clock> = Arc::new(latchkey_core::SystemClock);
            tokio::spawn(crate::mail::run_outbox(
                service,
                mailer,
                metrics,
                wall,
                Backoff::default(),
            ))
        });
        let app = MakeTracked {
            app: http::router(self.state),
        };
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let stopping = self.stopping;
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            // Feed subscribers' streams end, so their connections can close.
            let _ = stopping.send(true);
            let _ = stopping_tx.send(());
        });
        let forced = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = server => result?,
            () = forced => tracing::warn!("requests still in flight after 10 s: stopping anyway"),
        }
        reloader.abort();
        pruner.abort();
        recounter.abort();
        feed.abort();
        if let Some(outbox) = outbox {
            outbox.abort();
        }
        Ok(())
    }
}

/// Says at start-up what would give the store's reader more than it should.
async fn warn_of_exposed_secrets(
    config: &Config,
    service: &latchkey_core::Service,
) -> anyhow::Result<()> {
    if let Some(path) = &config.master_key_file {
        if shared_with_others(path)? {
            tracing::warn!(
                file = %path.display(),
                "master_key_file is readable by others: make it the owner's only (chmod 600)"
            );
        }
    }
    if config.master_key.is_some() {
        let exposed = service.unencrypted_live_keys().await?;
        if !exposed.is_empty() {
            tracing::warn!(
                kids = %exposed.join(","),
                "signing keys made before master_key was set are stored unencrypted: \
                 run `latchkey key rotate`; the new key is encrypted, and the old ones \
                 retire when it signs and are deleted once no token needs them"
            );
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a signal that comes right
/// after `listening on` must stop the server gracefully, not kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
