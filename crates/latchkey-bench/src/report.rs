//! One JSON line per run, and the Markdown table that compares runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::LoadConfig;

/// Latencies in microseconds, 1 us to 10 min, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// The result of one run: printed as one line of JSON.
///
/// `requests` = `ok` + `errors` (non-2xx answers, transport errors and
/// time-outs), counted when they complete inside the measured window;
/// `req_per_s` is `ok` per second; latencies are of the 2xx answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub target: String,
    pub scenario: String,
    pub path: String,
    pub connections: usize,
    /// Seconds of the measured window.
    pub duration: f64,
    pub warmup: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub req_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub statuses: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub timeouts: u64,
    pub relogins: u64,
    pub relogin_failures: u64,
    pub reconnects: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub client_threads: usize,
    /// CPU used by the load generator itself, in % of one core.
    pub client_cpu_pct: Option<f64>,
    /// CPU used by the server's process groups (`--server-pgid`) in the
    /// window, in microseconds per 2xx answer.
    pub server_cpu_us_per_req: Option<f64>,
    /// CPU used by the database's processes (`--database-comm`) in the
    /// window, in microseconds per 2xx answer.
    pub database_cpu_us_per_req: Option<f64>,
}

impl RunReport {
    pub fn empty(cfg: &LoadConfig) -> Self {
        Self {
            label: cfg.label.clone(),
            target: cfg.target.name().to_owned(),
            scenario: cfg.scenario.name().to_owned(),
            path: cfg
                .target
                .path_of(cfg.scenario)
                .unwrap_or_default()
                .to_owned(),
            connections: cfg.connections,
            warmup: cfg.warmup.as_secs_f64(),
            client_threads: cfg.client_threads,
            ..Self::default()
        }
    }

    /// Fills in the totals and percentiles.
    pub fn finish(&mut self, hist: &Histogram<u64>, window: Duration) {
        self.duration = window.as_secs_f64();
        self.requests = self.ok + self.errors;
        self.req_per_s = if self.duration > 0.0 {
            self.ok as f64 / self.duration
        } else {
            0.0
        };
        if !hist.is_empty() {
            self.p50_us = hist.value_at_quantile(0.50);
            self.p99_us = hist.value_at_quantile(0.99);
            self.p999_us = hist.value_at_quantile(0.999);
            self.max_us = hist.max();
            self.mean_us = (hist.mean() * 10.0).round() / 10.0;
        }
        self.req_per_s = (self.req_per_s * 10.0).round() / 10.0;
        self.client_cpu_pct = self.client_cpu_pct.map(|c| c.round());
        self.server_cpu_us_per_req = self
            .server_cpu_us_per_req
            .map(|c| (c * 10.0).round() / 10.0);
        self.database_cpu_us_per_req = self
            .database_cpu_us_per_req
            .map(|c| (c * 10.0).round() / 10.0);
    }

    /// The human-readable line (stderr).
    pub fn human(&self) -> String {
        let label = self.label.as_deref().unwrap_or(&self.target);
        let (unit, rate) = if self.scenario == "hash" {
            ("threads", "hashes/s")
        } else {
            ("conns", "req/s")
        };
        let mut s = format!(
            "{label} {} ({}): {} {unit}, {:.1} s: {} ok, {} errors, {:.1} {rate}, p50 {}, p99 {}, p999 {}",
            self.scenario,
            self.path,
            self.connections,
            self.duration,
            self.ok,
            self.errors,
            self.req_per_s,
            fmt_us(self.p50_us),
            fmt_us(self.p99_us),
            fmt_us(self.p999_us),
        );
        if self.p50_us == 0 && self.mean_us > 0.0 {
            // pgbench reports only an average.
            let _ = write!(s, ", mean {}", fmt_us(self.mean_us.round() as u64));
        }
        if let Some(cpu) = self.server_cpu_us_per_req {
            let _ = write!(s, ", server cpu {cpu:.1} us/req");
        }
        if let Some(cpu) = self.database_cpu_us_per_req {
            let _ = write!(s, ", database cpu {cpu:.1} us/req");
        }
        if let Some(cpu) = self.client_cpu_pct {
            let _ = write!(s, ", load generator cpu {cpu:.0}%");
        }
        if !self.statuses.is_empty() {
            let _ = write!(s, ", statuses {:?}", self.statuses);
        }
        if self.relogins > 0 || self.relogin_failures > 0 {
            let _ = write!(
                s,
                ", relogins {} (failed {})",
                self.relogins, self.relogin_failures
            );
        }
        if let Some(e) = &self.first_error {
            let _ = write!(s, ", first error: {e}");
        }
        s
    }
}

pub fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} us")
    }
}

pub fn fmt_rate(r: f64) -> String {
    let whole = r.round() as u64;
    if r < 100.0 {
        return format!("{r:.1}");
    }
    let digits = whole.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        n => n,
    };
    let mut out = digits.get(..head).unwrap_or_default().to_owned();
    let mut i = head;
    while let Some(group) = digits.get(i..i + 3) {
        out.push(',');
        out.push_str(group);
        i += 3;
    }
    out
}

/// A whole count, with thousands separators: `12,345`.
pub fn fmt_count(n: u64) -> String {
    if n < 100 {
        n.to_string()
    } else {
        fmt_rate(n as f64)
    }
}

/// The run with the median `req_per_s` (the lower middle for an even count).
fn median(runs: &[&RunReport]) -> Option<RunReport> {
    let mut v: Vec<&RunReport> = runs.to_vec();
    v.sort_by(|a, b| a.req_per_s.total_cmp(&b.req_per_s));
    v.get((v.len().saturating_sub(1)) / 2).map(|r| (*r).clone())
}

/// The columns of the comparisons, by label.
pub const LATCHKEY: &str = "latchkey";
pub const FAITHFUL: &str = "express-faithful";
pub const STRONGEST: &str = "express-strongest";
pub const HASH: &str = "argon2id";
/// latchkey on PostgreSQL: one node, and two nodes sharing the database.
pub const PG: &str = "latchkey-pg";
pub const PG_TWO: &str = "latchkey-pg-2nodes";
/// panva's oidc-provider, the OAuth peer.
pub const OIDC: &str = "oidc-provider";

fn key(r: &RunReport) -> String {
    r.label.clone().unwrap_or_else(|| r.target.clone())
}

/// Server CPU per request, `n/a` when not measured.
fn fmt_cpu(r: Option<&RunReport>) -> String {
    r.and_then(|r| r.server_cpu_us_per_req)
        .map_or_else(|| "n/a".to_owned(), fmt_rate)
}

/// req/s (with errors), p50 / p99, server CPU µs/req.
fn cell(r: Option<&RunReport>) -> [String; 3] {
    match r {
        None => ["n/a".into(), "".into(), "n/a".into()],
        Some(r) => {
            let mut rate = fmt_rate(r.req_per_s);
            if r.errors > 0 {
                let _ = write!(rate, " ({} err)", r.errors);
            }
            [
                rate,
                format!("{} / {}", fmt_us(r.p50_us), fmt_us(r.p99_us)),
                fmt_cpu(Some(r)),
            ]
        }
    }
}

/// req/s of `a` ÷ req/s of `b`.
fn ratio(a: Option<&RunReport>, b: Option<&RunReport>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.req_per_s > 0.0 => format!("{:.2}x", a.req_per_s / b.req_per_s),
        _ => "n/a".into(),
    }
}

/// Server CPU per request of `theirs` ÷ that of `ours`: how many times
/// the CPU latchkey spends on the same request the other spends.
fn fmt_db_cpu(r: Option<&RunReport>) -> String {
    match r.and_then(|r| r.database_cpu_us_per_req) {
        Some(us) => format!("{us:.1} µs"),
        None => "(not measured)".to_owned(),
    }
}

fn cpu_ratio(theirs: Option<&RunReport>, ours: Option<&RunReport>) -> String {
    let cpu = |r: Option<&RunReport>| r.and_then(|r| r.server_cpu_us_per_req);
    match (cpu(theirs), cpu(ours)) {
        (Some(t), Some(o)) if o > 0.0 => format!("{:.2}x", t / o),
        _ => "n/a".into(),
    }
}

/// Reads JSON lines (lines that are not a JSON object are skipped) and
/// prints the comparison tables.
pub fn markdown(text: &str) -> Result<String> {
    let mut runs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let r: RunReport =
            serde_json::from_str(line).with_context(|| format!("line {}: not a run", n + 1))?;
        runs.push(r);
    }
    let pick = |label: &str, scenario: &str| -> Option<RunReport> {
        let matching: Vec<&RunReport> = runs
            .iter()
            .filter(|r| key(r) == label && r.scenario == scenario)
            .collect();
        median(&matching)
    };

    let mut out = String::new();
    let express_rows = [
        ("me", "`GET /v1/me` vs `GET /me`"),
        (
            "refresh",
            "refresh: `POST /v1/auth/refresh` (rotating, durable) vs `POST /refresh-token` (no rotation)",
        ),
        ("login", "login: `POST /v1/auth/login` (Argon2id) vs `POST /login` (bcrypt 10)"),
    ];
    let mut table = String::new();
    for (scenario, title) in express_rows {
        let lk = pick(LATCHKEY, scenario);
        let fa = pick(FAITHFUL, scenario);
        let st = pick(STRONGEST, scenario);
        if lk.is_none() && fa.is_none() && st.is_none() {
            continue;
        }
        let [lr, ll, lc] = cell(lk.as_ref());
        let [fr, fl, fc] = cell(fa.as_ref());
        let [sr, sl, sc] = cell(st.as_ref());
        let _ = writeln!(
            table,
            "| {title} | {lr} | {ll} | {lc} | {fr} | {fl} | {fc} | {sr} | {sl} | {sc} | {} | {} | {} |",
            ratio(lk.as_ref(), st.as_ref()),
            ratio(lk.as_ref(), fa.as_ref()),
            cpu_ratio(st.as_ref(), lk.as_ref()),
        );
    }
    if !table.is_empty() {
        out.push_str(
            "| path | latchkey req/s | p50 / p99 | CPU µs/req | Express faithful req/s | p50 / p99 | \
             CPU µs/req | Express strongest req/s | p50 / p99 | CPU µs/req | latchkey / strongest | \
             latchkey / faithful | strongest CPU/req ÷ latchkey CPU/req |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&table);
        out.push('\n');
    }

    let oauth_rows = [
        (
            "token-cc",
            "`POST /oauth2/token` client_credentials vs `POST /token`",
        ),
        (
            "token-refresh",
            "`POST /oauth2/token` refresh_token (rotating) vs `POST /token`",
        ),
        (
            "introspect",
            "`POST /oauth2/introspect` of a user's access token (JWT) vs \
             `POST /token/introspection` of an opaque client_credentials token",
        ),
    ];
    let mut table = String::new();
    for (scenario, title) in oauth_rows {
        let lk = pick(LATCHKEY, scenario);
        let op = pick(OIDC, scenario);
        if lk.is_none() && op.is_none() {
            continue;
        }
        let [lr, ll, lc] = cell(lk.as_ref());
        let [or, ol, oc] = cell(op.as_ref());
        let _ = writeln!(
            table,
            "| {title} | {lr} | {ll} | {lc} | {or} | {ol} | {oc} | {} | {} |",
            ratio(lk.as_ref(), op.as_ref()),
            cpu_ratio(op.as_ref(), lk.as_ref()),
        );
    }
    if !table.is_empty() {
        out.push_str(
            "| OAuth path | latchkey req/s | p50 / p99 | CPU µs/req | oidc-provider req/s | \
             p50 / p99 | CPU µs/req | latchkey / oidc-provider | \
             oidc-provider CPU/req ÷ latchkey CPU/req |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&table);
        out.push('\n');
    }

    let pg_rows = [
        ("me", "`GET /v1/me`"),
        ("refresh", "`POST /v1/auth/refresh`"),
        ("token-refresh", "`POST /oauth2/token` refresh_token"),
    ];
    let mut table = String::new();
    for (scenario, title) in pg_rows {
        let pg = pick(PG, scenario);
        let two = pick(PG_TWO, scenario);
        if pg.is_none() && two.is_none() {
            continue;
        }
        let [a, al, ac] = cell(pick(LATCHKEY, scenario).as_ref());
        let [b, bl, bc] = cell(pg.as_ref());
        let [c, cl, cc] = cell(two.as_ref());
        let _ = writeln!(
            table,
            "| {title} | {a} | {al} | {ac} | {b} | {bl} | {bc} | {c} | {cl} | {cc} |"
        );
    }
    if !table.is_empty() {
        out.push_str(
            "| path | SQLite, 1 node req/s | p50 / p99 | CPU µs/req | PostgreSQL, 1 node req/s | \
             p50 / p99 | CPU µs/req | PostgreSQL, 2 nodes req/s | p50 / p99 | CPU µs/req |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&table);
        out.push('\n');
    }
    if let Some(bare) = pick(crate::pgbench::LABEL, crate::pgbench::SCENARIO) {
        let _ = write!(
            out,
            "PostgreSQL's own single-row UPDATE by primary key (pgbench, {} clients, one row \
             each, prepared): {} updates/s, {} of database CPU per update",
            bare.connections,
            fmt_rate(bare.req_per_s),
            fmt_db_cpu(Some(&bare)),
        );
        let audited = pick(crate::pgbench::LABEL, crate::pgbench::SCENARIO_AUDITED);
        if let Some(a) = &audited {
            let _ = write!(
                out,
                "; with the audit row a refresh writes in the same statement: {} updates/s, \
                 {} of database CPU per update",
                fmt_rate(a.req_per_s),
                fmt_db_cpu(Some(a)),
            );
        }
        out.push_str(".\n");
        for (label, name) in [(PG, "one node"), (PG_TWO, "two nodes")] {
            if let Some(r) = pick(label, "refresh") {
                let share = |base: &RunReport| {
                    format!(
                        "{:.0}%",
                        100.0 * r.req_per_s / base.req_per_s.max(f64::MIN_POSITIVE)
                    )
                };
                let _ = writeln!(
                    out,
                    "latchkey's refresh on {name}: {} of the bare update's rate, {} of the \
                     audited update's; {} of database CPU per refresh.",
                    share(&bare),
                    audited.as_ref().map_or_else(|| "n/a".to_owned(), share),
                    fmt_db_cpu(Some(&r)),
                );
            }
        }
        out.push('\n');
    }

    let hash = pick(HASH, "hash");
    if let Some(h) = &hash {
        let _ = write!(
            out,
            "Bare Argon2id hashing (m=19456, t=2, p=1) on {} threads: {} hashes/s (p50 {} per hash)",
            h.connections,
            fmt_rate(h.req_per_s),
            fmt_us(h.p50_us)
        );
        match pick(LATCHKEY, "login") {
            Some(l) if h.req_per_s > 0.0 => {
                let _ = writeln!(
                    out,
                    "; latchkey's login reaches {:.0}% of it.",
                    100.0 * l.req_per_s / h.req_per_s
                );
            }
            _ => out.push_str(".\n"),
        }
    }

    // Every (label, scenario) measured, in the order of the lines.
    let mut measured: Vec<(String, String)> = Vec::new();
    for r in runs.iter().filter(|r| key(r) != HASH) {
        let k = (key(r), r.scenario.clone());
        if !measured.contains(&k) {
            measured.push(k);
        }
    }
    if let Some(any) = runs.iter().find(|r| key(r) != HASH) {
        let runs_seen = measured
            .iter()
            .map(|(l, s)| {
                runs.iter()
                    .filter(|r| key(r) == *l && r.scenario == *s)
                    .count()
            })
            .max()
            .unwrap_or(0);
        let cpu: Vec<String> = measured
            .iter()
            .filter_map(|(l, s)| {
                pick(l, s).and_then(|r| r.client_cpu_pct.map(|c| format!("{l} {s} {c:.0}%")))
            })
            .collect();
        let _ = writeln!(
            out,
            "\nMedian (by req/s) of {runs_seen} run(s) of {:.0} s each after {:.0} s of warm-up, \
             {} keep-alive connections, loopback. The load generator ({} thread(s)) and the \
             server share the same {} cores; its own CPU use, in % of one core: {}.",
            any.duration,
            any.warmup,
            any.connections,
            any.client_threads,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            if cpu.is_empty() {
                "not measured".to_owned()
            } else {
                cpu.join(", ")
            },
        );
        if runs.iter().any(|r| r.server_cpu_us_per_req.is_some()) {
            out.push_str(
                "\nCPU µs/req: the server's user + system CPU time in the measured window \
                 (every process of its process group: a Node cluster's primary and workers \
                 alike; both nodes of a 2-node deployment), divided by its 2xx answers. On \
                 PostgreSQL it is latchkey's alone: the PostgreSQL server's own CPU is not \
                 counted. n/a: not measured.\n",
            );
        }
    }
    let errors: Vec<String> = runs
        .iter()
        .filter(|r| r.errors > 0 || r.relogin_failures > 0)
        .map(|r| {
            format!(
                "{} {}: {} errors {:?}{}",
                key(r),
                r.scenario,
                r.errors,
                r.statuses,
                r.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors: {}.", errors.join("; "));
    }
    let again: Vec<String> = runs
        .iter()
        .filter(|r| r.relogins > 0)
        .map(|r| format!("{} {}: {}", key(r), r.scenario, r.relogins))
        .collect();
    if !again.is_empty() {
        let _ = writeln!(
            out,
            "\nSessions or tokens obtained again during the load (after a 400/401, \
             or an inactive token): {}.",
            again.join("; ")
        );
    }
    Ok(out)
}

/// `404: 10, transport: 1` (statuses, then the other counts that are not
/// zero), or `none`.
pub fn status_summary(
    statuses: &std::collections::BTreeMap<u16, u64>,
    others: &[(&str, u64)],
) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .chain(
            others
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(what, n)| format!("{what}: {n}")),
        )
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_cpu(label: &str, scenario: &str, rps: f64, cpu: Option<f64>) -> String {
        let r = RunReport {
            label: Some(label.into()),
            target: label.split('-').next().unwrap().into(),
            scenario: scenario.into(),
            connections: 32,
            duration: 10.0,
            warmup: 2.0,
            req_per_s: rps,
            p50_us: 1500,
            p99_us: 12_000,
            client_threads: 1,
            server_cpu_us_per_req: cpu,
            ..RunReport::default()
        };
        serde_json::to_string(&r).unwrap()
    }

    fn run(label: &str, scenario: &str, rps: f64) -> String {
        run_cpu(label, scenario, rps, None)
    }

    /// The table row whose first cell starts with `start`, split in cells.
    fn row<'a>(md: &'a str, start: &str) -> Vec<&'a str> {
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| {start}")))
            .unwrap_or_else(|| panic!("no row {start:?} in\n{md}"));
        line.trim_matches('|').split(" | ").map(str::trim).collect()
    }

    #[test]
    fn table_takes_medians_and_ratios() {
        let lines = [
            run_cpu(LATCHKEY, "me", 30_000.0, Some(10.0)),
            run_cpu(LATCHKEY, "me", 10_000.0, Some(30.0)),
            run_cpu(LATCHKEY, "me", 20_000.0, Some(20.0)),
            run_cpu(STRONGEST, "me", 8_000.0, Some(150.0)),
            run(FAITHFUL, "me", 1_000.0),
            run(LATCHKEY, "login", 90.0),
            run(HASH, "hash", 100.0),
            "not json".to_owned(),
        ]
        .join("\n");
        let md = markdown(&lines).unwrap();
        // The median run's figures, its own CPU included.
        let me = row(&md, "`GET /v1/me`");
        assert_eq!(
            me,
            [
                "`GET /v1/me` vs `GET /me`",
                "20,000",
                "1.50 ms / 12 ms",
                "20.0",
                "1,000",
                "1.50 ms / 12 ms",
                "n/a",
                "8,000",
                "1.50 ms / 12 ms",
                "150",
                "2.50x",
                "20.00x",
                "7.50x",
            ]
        );
        // No CPU for login: the ratio says so.
        assert_eq!(row(&md, "login:").last(), Some(&"n/a"));
        assert!(md.contains("reaches 90% of it"), "{md}");
        assert!(md.contains("of 3 run(s)"), "{md}");
        assert!(
            md.contains("PostgreSQL server's own CPU is not counted"),
            "{md}"
        );
        // No OAuth or PostgreSQL runs: no such tables.
        assert!(!md.contains("OAuth path"), "{md}");
        assert!(!md.contains("PostgreSQL, 1 node"), "{md}");
    }

    #[test]
    fn oauth_table_compares_with_oidc_provider() {
        let lines = [
            run_cpu(LATCHKEY, "token-cc", 12_000.0, Some(80.0)),
            run_cpu(OIDC, "token-cc", 3_000.0, Some(600.0)),
            run_cpu(LATCHKEY, "token-refresh", 4_000.0, Some(250.0)),
            run_cpu(OIDC, "token-refresh", 2_000.0, Some(1000.0)),
            run_cpu(OIDC, "introspect", 5_000.0, Some(400.0)),
        ]
        .join("\n");
        let md = markdown(&lines).unwrap();
        assert!(md.contains("| OAuth path |"), "{md}");
        assert!(!md.contains("Express faithful"), "{md}");
        let cc = row(&md, "`POST /oauth2/token` client_credentials");
        assert_eq!(
            cc[1..],
            [
                "12,000",
                "1.50 ms / 12 ms",
                "80.0",
                "3,000",
                "1.50 ms / 12 ms",
                "600",
                "4.00x",
                "7.50x"
            ]
        );
        let refresh = row(&md, "`POST /oauth2/token` refresh_token");
        assert_eq!(refresh[7..], ["2.00x", "4.00x"]);
        // latchkey not measured: no ratios, oidc-provider's figures still shown.
        let intro = row(&md, "`POST /oauth2/introspect`");
        assert_eq!(
            intro[1..],
            [
                "n/a",
                "",
                "n/a",
                "5,000",
                "1.50 ms / 12 ms",
                "400",
                "n/a",
                "n/a"
            ]
        );
    }

    #[test]
    fn postgres_table_has_cpu_and_oauth_refresh() {
        let lines = [
            run_cpu(LATCHKEY, "refresh", 9_000.0, Some(110.0)),
            run_cpu(PG, "refresh", 3_000.0, Some(140.0)),
            run_cpu(PG_TWO, "refresh", 3_500.0, Some(160.0)),
            run_cpu(PG, "token-refresh", 2_500.0, Some(170.4)),
        ]
        .join("\n");
        let md = markdown(&lines).unwrap();
        let refresh = row(&md, "`POST /v1/auth/refresh` |");
        assert_eq!(refresh[1..4], ["9,000", "1.50 ms / 12 ms", "110"]);
        assert_eq!(refresh[4..7], ["3,000", "1.50 ms / 12 ms", "140"]);
        assert_eq!(refresh[7..10], ["3,500", "1.50 ms / 12 ms", "160"]);
        let oauth = row(&md, "`POST /oauth2/token` refresh_token |");
        assert_eq!(oauth[4..7], ["2,500", "1.50 ms / 12 ms", "170"]);
        assert_eq!(oauth[7], "n/a");
        // `me` was not run on PostgreSQL: no row.
        assert!(!md.contains("| `GET /v1/me` |"), "{md}");
    }

    #[test]
    fn pgbench_lines_give_the_shares_of_the_database_rate() {
        let line = |label: &str, scenario: &str, rps: f64, db: f64| {
            serde_json::to_string(&RunReport {
                label: Some(label.into()),
                target: label.into(),
                scenario: scenario.into(),
                connections: 32,
                duration: 10.0,
                req_per_s: rps,
                database_cpu_us_per_req: Some(db),
                ..RunReport::default()
            })
            .unwrap()
        };
        let lines = [
            line(
                crate::pgbench::LABEL,
                crate::pgbench::SCENARIO,
                20_000.0,
                60.0,
            ),
            line(
                crate::pgbench::LABEL,
                crate::pgbench::SCENARIO_AUDITED,
                16_000.0,
                80.0,
            ),
            line(PG, "refresh", 8_000.0, 100.0),
        ]
        .join("\n");
        let md = markdown(&lines).unwrap();
        assert!(md.contains("20,000 updates/s, 60.0 µs"), "{md}");
        assert!(md.contains("16,000 updates/s, 80.0 µs"), "{md}");
        assert!(
            md.contains(
                "on one node: 40% of the bare update's rate, 50% of the audited update's; 100.0 µs"
            ),
            "{md}"
        );
    }

    #[test]
    fn server_cpu_in_json_and_human_line() {
        let mut r = RunReport {
            label: Some(STRONGEST.into()),
            target: "express".into(),
            scenario: "me".into(),
            path: "/me".into(),
            ok: 100,
            server_cpu_us_per_req: Some(123.456),
            ..RunReport::default()
        };
        r.finish(&new_histogram().unwrap(), Duration::from_secs(2));
        assert_eq!(r.server_cpu_us_per_req, Some(123.5));
        assert!(
            r.human().contains("server cpu 123.5 us/req"),
            "{}",
            r.human()
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["server_cpu_us_per_req"], 123.5);
        // Lines written before the field existed still read.
        let old: RunReport =
            serde_json::from_str(r#"{"target":"latchkey","scenario":"me","req_per_s":1.0}"#)
                .unwrap();
        assert_eq!(old.server_cpu_us_per_req, None);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_rate(33.25), "33.2");
        assert_eq!(fmt_count(33), "33");
        assert_eq!(fmt_count(12_345), "12,345");
        assert_eq!(fmt_us(950), "950 us");
        assert_eq!(fmt_us(1500), "1.50 ms");
        assert_eq!(fmt_us(25_000), "25 ms");
    }
}
