//! `soak`: the mix at about half its peak for minutes, with the server's
//! resident memory sampled all along. Prints a Markdown summary.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use hyper::header::HeaderValue;
use tokio::time::Instant;

use crate::client::Endpoint;
use crate::mix::{self, Drive, Kind, Mix, WindowStats};
use crate::report::fmt_rate;
use crate::server::{fmt_mib, RssSample, Server};

#[derive(Args)]
pub struct SoakArgs {
    /// The server, as http://IP:PORT (loopback only).
    #[arg(long)]
    url: String,
    /// The server's process id, for its resident memory (VmRSS).
    #[arg(long)]
    server_pid: u32,
    /// Keep-alive connections, one virtual user each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Shares of the requests.
    #[arg(long, default_value = "me=70,refresh=29,login=1")]
    mix: Mix,
    /// Load before the peak is measured.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    warmup: Duration,
    /// Window in which the peak of the mix is measured (closed loop).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    peak_window: Duration,
    /// The soak's rate, as a fraction of the peak.
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// Length of the soak.
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration)]
    duration: Duration,
    /// How often VmRSS is read.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    rss_every: Duration,
    /// The sample every later one is compared with (default: 1 min, or
    /// half the soak if it is shorter than 2 min).
    #[arg(long, value_parser = crate::parse_duration)]
    rss_reference: Option<Duration>,
    /// Allowed drift of VmRSS from the reference, as a fraction.
    #[arg(long, default_value_t = 0.2)]
    rss_tolerance: f64,
    /// A request without an answer by then counts as an error.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    request_timeout: Duration,
    /// What is measured, for the title (e.g. "latchkey on SQLite").
    #[arg(long, default_value = "latchkey")]
    label: String,
}

/// Runs the soak; prints the summary on stdout. `Ok(false)`: a FAIL.
pub async fn run(args: SoakArgs) -> Result<bool> {
    if args.connections == 0 || !(args.load > 0.0 && args.load <= 1.0) {
        bail!("--connections must be at least 1 and --load in (0, 1]");
    }
    if args.rss_every.is_zero() || args.peak_window.is_zero() || args.duration.is_zero() {
        bail!("--rss-every, --peak-window and --duration must be more than 0");
    }
    let endpoint = Endpoint::parse(&args.url)?;
    let origin = HeaderValue::from_str(&endpoint.origin)?;
    let server = Server::new(args.server_pid)?;
    let reference = args.rss_reference.unwrap_or_else(|| {
        if args.duration >= Duration::from_secs(120) {
            Duration::from_secs(60)
        } else {
            args.duration / 2
        }
    });

    eprintln!(
        "soak: setting up {} virtual users at {}",
        args.connections, args.url
    );
    let vus = mix::setup(&endpoint, &origin, args.connections, args.request_timeout)
        .await
        .context("setup")?;

    eprintln!(
        "soak: peak of the mix ({}), closed loop: {:?} warm-up + {:?}",
        args.mix.describe(),
        args.warmup,
        args.peak_window
    );
    let start = Instant::now();
    let peak_cfg = Drive {
        origin: origin.clone(),
        request_timeout: args.request_timeout,
        mix: args.mix,
        rate: None,
        start,
        windows: vec![start + args.warmup, start + args.warmup + args.peak_window],
        backoff_503: Duration::from_millis(20),
    };
    let (vus, peak) = mix::drive(Arc::new(peak_cfg), vus).await?;
    let peak = peak.into_iter().next().context("no peak window")?;
    let peak_rate = peak.ok_per_s();
    if peak_rate < 1.0 {
        bail!(
            "the peak is {peak_rate:.1} req/s: nothing to soak at (first error: {:?})",
            peak.kinds.iter().find_map(|k| k.first_error.clone())
        );
    }
    let rate = peak_rate * args.load;
    eprintln!(
        "soak: peak {} req/s; soaking at {} req/s for {:?}, VmRSS every {:?}",
        fmt_rate(peak_rate),
        fmt_rate(rate),
        args.duration,
        args.rss_every
    );

    let start = Instant::now() + Duration::from_millis(100);
    let end = start + args.duration;
    let soak_cfg = Drive {
        origin,
        request_timeout: args.request_timeout,
        mix: args.mix,
        rate: Some(rate),
        start,
        windows: vec![start, end],
        backoff_503: Duration::ZERO,
    };
    let (soaked, samples) = tokio::join!(
        mix::drive(Arc::new(soak_cfg), vus),
        server.sample_rss(start, args.rss_every, end)
    );
    let (_vus, soak) = soaked?;
    let soak = soak.into_iter().next().context("no soak window")?;

    let memory = Memory::judge(&samples, reference, args.rss_tolerance);
    let summary = Summary {
        args: &args,
        reference,
        peak: &peak,
        peak_rate,
        rate,
        soak: &soak,
        samples: &samples,
        memory: &memory,
    };
    print!("{}", summary.markdown());
    Ok(soak.errors() == 0 && memory.pass != Some(false))
}

/// VmRSS after the reference time, compared with the reference sample.
#[derive(Debug)]
struct Memory {
    reference: Option<RssSample>,
    min: Option<u64>,
    max: Option<u64>,
    last: Option<u64>,
    /// `None`: no sample after the reference (a soak too short).
    pass: Option<bool>,
}

impl Memory {
    fn judge(samples: &[RssSample], reference: Duration, tolerance: f64) -> Self {
        let at = reference.as_secs_f64();
        let Some(r) = samples.iter().find(|s| s.at >= at - 1e-6).copied() else {
            return Self {
                reference: None,
                min: None,
                max: None,
                last: None,
                pass: None,
            };
        };
        let after: Vec<u64> = samples
            .iter()
            .filter(|s| s.at > r.at)
            .map(|s| s.kib)
            .collect();
        let min = after.iter().min().copied();
        let max = after.iter().max().copied();
        let within = |kib: u64| {
            let ratio = kib as f64 / r.kib.max(1) as f64;
            (1.0 - tolerance..=1.0 + tolerance).contains(&ratio)
        };
        Self {
            reference: Some(r),
            min,
            max,
            last: after.last().copied(),
            pass: (!after.is_empty()).then(|| after.iter().all(|k| within(*k))),
        }
    }
}

fn pct_change(kib: u64, reference: u64) -> String {
    format!(
        "{:+.1}%",
        100.0 * (kib as f64 - reference as f64) / reference.max(1) as f64
    )
}

struct Summary<'a> {
    args: &'a SoakArgs,
    reference: Duration,
    peak: &'a WindowStats,
    peak_rate: f64,
    rate: f64,
    soak: &'a WindowStats,
    samples: &'a [RssSample],
    memory: &'a Memory,
}

impl Summary<'_> {
    fn markdown(&self) -> String {
        let a = self.args;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### Soak: {} of mixed load at {:.0}% of its peak ({})\n",
            fmt_secs(a.duration),
            100.0 * a.load,
            a.label
        );
        let _ = writeln!(
            out,
            "- Mix: {}, over {} keep-alive connections (one virtual user each), loopback.",
            a.mix.describe(),
            a.connections
        );
        let _ = writeln!(
            out,
            "- Peak of the mix, closed loop, {} after {} of warm-up: **{} req/s** (2xx){}.",
            fmt_secs(a.peak_window),
            fmt_secs(a.warmup),
            fmt_rate(self.peak_rate),
            if self.peak.errors() > 0 {
                let login = self.peak.kind(Kind::Login);
                format!(
                    "; {} errors at full load ({} of them on login: {})",
                    self.peak.errors(),
                    login.errors,
                    login.error_summary()
                )
            } else {
                String::new()
            }
        );
        let late: u64 = self.soak.kinds.iter().map(|k| k.late).sum();
        let _ = writeln!(
            out,
            "- Soak: an open-loop schedule of {} req/s for {}: request k is due at start + k / rate \
             and goes out on whichever connection is free; latencies count from the due time. \
             Achieved {} 2xx/s; {late} requests went out more than {} ms late.\n",
            fmt_rate(self.rate),
            fmt_secs(a.duration),
            fmt_rate(self.soak.ok_per_s()),
            mix::LATE.as_millis()
        );
        out.push_str(&self.soak.table());
        out.push('\n');

        let m = self.memory;
        match (m.reference, m.min, m.max, m.last) {
            (Some(r), Some(min), Some(max), Some(last)) => {
                let _ = writeln!(
                    out,
                    "Server memory (VmRSS, every {}): {} at {:.0} s (the reference); after it \
                     min {} ({}), max {} ({}), last {} ({}).\n",
                    fmt_secs(a.rss_every),
                    fmt_mib(r.kib),
                    r.at,
                    fmt_mib(min),
                    pct_change(min, r.kib),
                    fmt_mib(max),
                    pct_change(max, r.kib),
                    fmt_mib(last),
                    pct_change(last, r.kib),
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "Server memory: fewer than two samples from {} on (the soak is too short to \
                     judge).\n",
                    fmt_secs(self.reference)
                );
            }
        }
        let series: Vec<String> = self
            .samples
            .iter()
            .map(|s| format!("{:.0} s: {:.1}", s.at, s.kib as f64 / 1024.0))
            .collect();
        let _ = writeln!(out, "VmRSS samples (MiB): {}.\n", series.join(", "));

        let errors = self.soak.errors();
        let _ = writeln!(
            out,
            "**Errors during the soak: {errors} → {}. VmRSS within {:.0}% of its reference: {}.**",
            if errors == 0 { "PASS" } else { "FAIL" },
            100.0 * a.rss_tolerance,
            match m.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "not judged",
            }
        );
        let firsts: Vec<String> = self
            .soak
            .kinds
            .iter()
            .filter_map(|k| k.first_error.clone())
            .collect();
        if !firsts.is_empty() {
            let _ = writeln!(out, "\nFirst errors: {}.", firsts.join("; "));
        }
        out
    }
}

/// `10 min`, `90 s`, `1.5 s`.
fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{:.0} min", s / 60.0)
    } else if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(kib: &[u64]) -> Vec<RssSample> {
        kib.iter()
            .enumerate()
            .map(|(i, k)| RssSample {
                at: 10.0 * i as f64,
                kib: *k,
            })
            .collect()
    }

    #[test]
    fn memory_is_judged_after_the_reference() {
        // 0..50 s may grow freely; 60 s is the reference.
        let s = samples(&[10, 50, 80, 90, 95, 99, 100, 110, 90, 119]);
        let m = Memory::judge(&s, Duration::from_secs(60), 0.2);
        assert_eq!(m.reference.map(|r| r.kib), Some(100));
        assert_eq!((m.min, m.max, m.last), (Some(90), Some(119), Some(119)));
        assert_eq!(m.pass, Some(true));

        let s = samples(&[10, 100, 121]);
        assert_eq!(
            Memory::judge(&s, Duration::from_secs(10), 0.2).pass,
            Some(false)
        );
        let s = samples(&[10, 100, 79]);
        assert_eq!(
            Memory::judge(&s, Duration::from_secs(10), 0.2).pass,
            Some(false)
        );
        let s = samples(&[10, 100]);
        assert_eq!(Memory::judge(&s, Duration::from_secs(10), 0.2).pass, None);
        assert_eq!(Memory::judge(&s, Duration::from_secs(60), 0.2).pass, None);
    }

    #[test]
    fn seconds() {
        assert_eq!(fmt_secs(Duration::from_secs(600)), "10 min");
        assert_eq!(fmt_secs(Duration::from_secs(90)), "90 s");
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5 s");
    }
}
