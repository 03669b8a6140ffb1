//! `abuse`: a normal client measured alone (baseline), then while an
//! attacker sends malformed requests as fast as the server answers, then
//! after the attack (recovery); with the server's resident memory and the
//! size of its /metrics. Prints a Markdown summary.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use hyper::header::HeaderValue;
use hyper::Method;
use tokio::time::{sleep_until, Instant};

use crate::attack::{self, Attack, AttackReport, AttackStats};
use crate::client::{Conn, Endpoint, Req};
use crate::mix::{self, Drive, Kind, Mix, WindowStats};
use crate::report::{fmt_count, fmt_rate, fmt_us};
use crate::server::{fmt_mib, Server};

#[derive(Args)]
pub struct AbuseArgs {
    /// The server, as http://IP:PORT (loopback only).
    #[arg(long)]
    url: String,
    /// The server's process id, for its resident memory (VmRSS).
    #[arg(long)]
    server_pid: u32,
    /// The normal client's keep-alive connections (closed loop).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// The normal client's requests.
    #[arg(long, default_value = "me=50,refresh=50")]
    mix: Mix,
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    warmup: Duration,
    /// The normal client alone.
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    baseline: Duration,
    /// The normal client under attack.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    attack: Duration,
    /// The normal client after the attack.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    recovery: Duration,
    /// The attacker's connections, each alternating the two attacks (as
    /// many as the server has cores keeps them all busy).
    #[arg(long, default_value_t = 2)]
    attack_connections: usize,
    /// Length of the random methods.
    #[arg(long, default_value_t = 8000)]
    method_len: usize,
    /// Size of the form bodies (the server's limit is 64 KiB).
    #[arg(long, default_value_t = 64 * 1024)]
    form_bytes: usize,
    /// Stop the attack early if the server's VmRSS passes this (MiB): the
    /// machine is shared.
    #[arg(long, default_value_t = 4096)]
    max_server_rss_mib: u64,
    /// The normal client's request time-out.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    request_timeout: Duration,
    /// The attacker's request time-out.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    attack_timeout: Duration,
    /// Time allowed to read /metrics.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    metrics_timeout: Duration,
    /// Goal: the normal throughput under attack is at least this fraction
    /// of the baseline.
    #[arg(long, default_value_t = 0.5)]
    min_ratio: f64,
    /// Goal: VmRSS after the recovery is within this fraction of before.
    #[arg(long, default_value_t = 0.2)]
    rss_tolerance: f64,
    /// What is measured, for the title (e.g. "latchkey on SQLite").
    #[arg(long, default_value = "latchkey")]
    label: String,
}

/// The size of one read of /metrics.
struct MetricsSize {
    status: u16,
    bytes: u64,
    complete: bool,
    seconds: f64,
}

async fn metrics_size(endpoint: &Endpoint, limit: Duration) -> Result<MetricsSize> {
    let mut conn = Conn::new(endpoint.clone());
    let started = Instant::now();
    let req = Req {
        method: Method::GET,
        path: "/metrics",
        bearer: None,
        basic: None,
        cookie: None,
        origin: None,
        body: None,
    };
    let (status, bytes, complete) = conn.send_counting(req, started + limit).await?;
    Ok(MetricsSize {
        status: status.as_u16(),
        bytes,
        complete,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// VmRSS readings around the attack, in KiB.
#[derive(Default)]
struct Rss {
    before: u64,
    attack_max: u64,
    attack_end: u64,
    after: u64,
    after_metrics: Option<u64>,
}

/// Runs the scenario; prints the summary on stdout. `Ok(false)`: a FAIL.
pub async fn run(args: AbuseArgs) -> Result<bool> {
    if args.connections == 0 || args.attack_connections == 0 || args.method_len == 0 {
        bail!("--connections, --attack-connections and --method-len must be at least 1");
    }
    if args.baseline.is_zero() || args.attack.is_zero() || args.recovery.is_zero() {
        bail!("--baseline, --attack and --recovery must be more than 0");
    }
    let endpoint = Endpoint::parse(&args.url)?;
    let origin = HeaderValue::from_str(&endpoint.origin)?;
    let server = Server::new(args.server_pid)?;
    let (form, params) = attack::form_body(args.form_bytes);

    eprintln!(
        "abuse: setting up {} virtual users at {}",
        args.connections, args.url
    );
    let vus = mix::setup(&endpoint, &origin, args.connections, args.request_timeout)
        .await
        .context("setup")?;

    let start = Instant::now();
    let baseline_at = start + args.warmup;
    let attack_at = baseline_at + args.baseline;
    let attack_end = attack_at + args.attack;
    let end = attack_end + args.recovery;
    let normal = Drive {
        origin,
        request_timeout: args.request_timeout,
        mix: args.mix,
        rate: None,
        start,
        windows: vec![baseline_at, attack_at, attack_end, end],
        backoff_503: Duration::from_millis(20),
    };
    let normal = tokio::spawn(mix::drive(Arc::new(normal), vus));
    eprintln!(
        "abuse: normal client ({}) on {} connections: {:?} warm-up, {:?} baseline",
        args.mix.describe(),
        args.connections,
        args.warmup,
        args.baseline
    );

    sleep_until(attack_at).await;
    let mut rss = Rss {
        before: server.rss_kib()?,
        ..Rss::default()
    };
    let metrics_before = metrics_size(&endpoint, args.metrics_timeout).await?;
    eprintln!(
        "abuse: attack for {:?} on {} connection(s): {}-letter methods and {}-byte forms of {params} parameters",
        args.attack, args.attack_connections, args.method_len, form.len()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = Attack {
        endpoint: endpoint.clone(),
        connections: args.attack_connections,
        method_len: args.method_len,
        form: form.clone(),
        request_timeout: args.attack_timeout,
        end: attack_end,
        stop: Arc::clone(&stop),
    }
    .spawn();

    // Watch the server's memory each second: the attack stops if it passes
    // the limit.
    let mut stopped_early = None;
    rss.attack_max = rss.before;
    let mut tick = attack_at;
    while tick < attack_end {
        tick = (tick + Duration::from_secs(1)).min(attack_end);
        sleep_until(tick).await;
        let kib = server.rss_kib()?;
        rss.attack_max = rss.attack_max.max(kib);
        if kib > args.max_server_rss_mib * 1024 && stopped_early.is_none() {
            eprintln!(
                "abuse: server VmRSS {} over the limit: stopping the attack",
                fmt_mib(kib)
            );
            stop.store(true, Ordering::Relaxed);
            stopped_early = Some((tick - attack_at).as_secs_f64());
        }
    }
    rss.attack_end = server.rss_kib()?;
    eprintln!(
        "abuse: attack over; VmRSS {}; {:?} of recovery",
        fmt_mib(rss.attack_end),
        args.recovery
    );
    let attack = tokio::time::timeout(args.attack_timeout + Duration::from_secs(5), attacker)
        .await
        .context("the attacker did not stop")?
        .context("the attacker's thread died")??;

    sleep_until(end).await;
    rss.after = server.rss_kib()?;
    let (_vus, windows) = normal.await??;
    eprintln!("abuse: reading /metrics");
    let metrics_after = metrics_size(&endpoint, args.metrics_timeout).await;
    rss.after_metrics = server.rss_kib().ok();

    let summary = Summary {
        args: &args,
        params,
        form_len: form.len(),
        windows: &windows,
        attack: &attack,
        stopped_early,
        rss: &rss,
        metrics_before: &metrics_before,
        metrics_after: metrics_after.as_ref().map_err(|e| format!("{e:#}")),
    };
    print!("{}", summary.markdown());
    Ok(summary.ratio() >= args.min_ratio && summary.rss_pass())
}

struct Summary<'a> {
    args: &'a AbuseArgs,
    params: usize,
    form_len: usize,
    windows: &'a [WindowStats],
    attack: &'a AttackReport,
    stopped_early: Option<f64>,
    rss: &'a Rss,
    metrics_before: &'a MetricsSize,
    metrics_after: Result<&'a MetricsSize, String>,
}

impl Summary<'_> {
    fn baseline(&self) -> f64 {
        self.windows.first().map_or(0.0, WindowStats::ok_per_s)
    }

    /// Normal throughput under attack / baseline.
    fn ratio(&self) -> f64 {
        let attack = self.windows.get(1).map_or(0.0, WindowStats::ok_per_s);
        if self.baseline() > 0.0 {
            attack / self.baseline()
        } else {
            0.0
        }
    }

    fn rss_pass(&self) -> bool {
        self.rss.after as f64 <= self.rss.before as f64 * (1.0 + self.args.rss_tolerance)
    }

    fn markdown(&self) -> String {
        let a = self.args;
        let mut out = String::new();
        let _ = writeln!(out, "### Abuse while serving ({})\n", a.label);
        let _ = writeln!(
            out,
            "- Normal client: {}, closed loop over {} keep-alive connections.",
            a.mix.describe(),
            a.connections
        );
        let _ = writeln!(
            out,
            "- Attacker: {} connection(s), each sending its next request as soon as it has the \
             answer, alternately (a) a request whose method is {} random letters, to a random \
             path, and (b) `POST {}` in turn, with an `application/x-www-form-urlencoded` body \
             of {} bytes: {} distinct empty parameters.",
            a.attack_connections,
            fmt_count(a.method_len as u64),
            attack::FORM_PATHS.join("`, `"),
            fmt_count(self.form_len as u64),
            fmt_count(self.params as u64),
        );
        let _ = writeln!(
            out,
            "- Windows: {:.0} s of warm-up, baseline {:.0} s (normal client alone), attack {:.0} s, \
             recovery {:.0} s.{}\n",
            a.warmup.as_secs_f64(),
            a.baseline.as_secs_f64(),
            a.attack.as_secs_f64(),
            a.recovery.as_secs_f64(),
            match self.stopped_early {
                Some(s) => format!(
                    " **The attack was stopped after {s:.0} s: the server's VmRSS passed {} MiB.**",
                    a.max_server_rss_mib
                ),
                None => String::new(),
            }
        );

        out.push_str(
            "| window | normal 2xx/s | vs baseline | errors | `GET /v1/me` p50 / p99 | \
             refresh p50 / p99 | server VmRSS at its end |\n|---|---:|---:|---:|---:|---:|---:|\n",
        );
        let names = ["baseline", "attack", "recovery"];
        let rss = [
            fmt_mib(self.rss.before),
            format!(
                "{} (max {})",
                fmt_mib(self.rss.attack_end),
                fmt_mib(self.rss.attack_max)
            ),
            fmt_mib(self.rss.after),
        ];
        for ((w, name), rss) in self.windows.iter().zip(names).zip(rss) {
            let lat = |k: Kind| {
                let h = &w.kind(k).hist;
                if h.is_empty() {
                    "n/a".to_owned()
                } else {
                    format!(
                        "{} / {}",
                        fmt_us(h.value_at_quantile(0.5)),
                        fmt_us(h.value_at_quantile(0.99))
                    )
                }
            };
            let errors: Vec<String> = w
                .kinds
                .iter()
                .filter(|k| k.errors > 0)
                .map(mix::KindStats::error_summary)
                .collect();
            let _ = writeln!(
                out,
                "| {name} ({:.0} s) | {} | {:.2}x | {} | {} | {} | {rss} |",
                w.seconds,
                fmt_rate(w.ok_per_s()),
                if self.baseline() > 0.0 {
                    w.ok_per_s() / self.baseline()
                } else {
                    0.0
                },
                if errors.is_empty() {
                    "0".to_owned()
                } else {
                    format!("{} ({})", w.errors(), errors.join("; "))
                },
                lat(Kind::Me),
                lat(Kind::Refresh),
            );
        }
        out.push('\n');

        out.push_str(
            "| attack request | sent | per second | answers | time to answer p50 / p99 / max |\n\
             |---|---:|---:|---|---:|\n",
        );
        let at = self.attack;
        for (name, st) in [
            (
                format!("(a) {}-letter method", fmt_count(a.method_len as u64)),
                &at.methods,
            ),
            (
                format!("(b) {}-parameter form", fmt_count(self.params as u64)),
                &at.forms,
            ),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {:.1} | {} | {} |",
                st.sent,
                st.sent as f64 / at.seconds.max(f64::MIN_POSITIVE),
                st.answers(),
                attack_latency(st),
            );
        }
        let _ = writeln!(
            out,
            "\nThe attacker sent {:.1} requests/s in all over {:.1} s, on {} connection(s) opened.{}\n",
            (at.methods.sent + at.forms.sent) as f64 / at.seconds.max(f64::MIN_POSITIVE),
            at.seconds,
            at.connects,
            [&at.methods, &at.forms]
                .iter()
                .filter_map(|s| s.first_error.as_deref())
                .map(|e| format!(" First error: {e}."))
                .collect::<String>()
        );

        let before = self.metrics_before;
        let _ = match &self.metrics_after {
            Ok(after) => writeln!(
                out,
                "`/metrics`: {} bytes before the attack, {} bytes after ({:.1}x; HTTP {}, read in {:.1} s{}).\n",
                fmt_count(before.bytes),
                fmt_count(after.bytes),
                after.bytes as f64 / before.bytes.max(1) as f64,
                after.status,
                after.seconds,
                if after.complete {
                    String::new()
                } else {
                    format!(
                        ", **not complete within {:.0} s: at least that size**",
                        a.metrics_timeout.as_secs_f64()
                    )
                },
            ),
            Err(e) => writeln!(
                out,
                "`/metrics`: {} bytes before the attack; after it, no answer: {e}.\n",
                fmt_count(before.bytes)
            ),
        };
        if let Some(kib) = self.rss.after_metrics {
            let _ = writeln!(
                out,
                "Server VmRSS after that read of /metrics: {}.\n",
                fmt_mib(kib)
            );
        }

        let ratio = self.ratio();
        let _ = writeln!(
            out,
            "**Normal throughput under attack: {ratio:.2}x the baseline → {} (goal: at least {:.2}x). \
             VmRSS {:.0} s after the attack: {} against {} before ({:+.1}%) → {} (goal: within {:.0}%).**",
            if ratio >= a.min_ratio { "PASS" } else { "FAIL" },
            a.min_ratio,
            a.recovery.as_secs_f64(),
            fmt_mib(self.rss.after),
            fmt_mib(self.rss.before),
            100.0 * (self.rss.after as f64 - self.rss.before as f64)
                / self.rss.before.max(1) as f64,
            if self.rss_pass() { "PASS" } else { "FAIL" },
            100.0 * a.rss_tolerance,
        );
        out
    }
}

fn attack_latency(st: &AttackStats) -> String {
    if st.hist.is_empty() {
        "n/a".to_owned()
    } else {
        format!(
            "{} / {} / {}",
            fmt_us(st.hist.value_at_quantile(0.5)),
            fmt_us(st.hist.value_at_quantile(0.99)),
            fmt_us(st.hist.max())
        )
    }
}
