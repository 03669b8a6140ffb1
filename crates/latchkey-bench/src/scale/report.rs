//! The scale tables: each store of an engine against that engine's
//! smallest store and against the store driven over the same live set, and
//! the prune's own figures.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::load::ScaleReport;

/// The line scripts/scale.sh writes from the server's `pruned` log line.
#[derive(Debug, Deserialize)]
pub struct PruneLine {
    pub engine: String,
    pub store: String,
    pub sessions_deleted: u64,
    pub longest_batch_ms: u64,
    pub took_ms: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Prune(PruneLine),
    Run(Box<ScaleReport>),
}

/// CPU per request of the whole deployment: latchkey's, and PostgreSQL's
/// when it was measured.
fn total_cpu(r: &ScaleReport) -> Option<f64> {
    Some(r.server_cpu_us_per_req? + r.database_cpu_us_per_req.unwrap_or(0.0))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        None => "-".into(),
    }
}

pub fn markdown(text: &str) -> Result<String> {
    let mut runs = Vec::new();
    let mut prunes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line).with_context(|| format!("line {}", i + 1))? {
            Line::Prune(p) => prunes.push(p),
            Line::Run(r) => runs.push(*r),
        }
    }
    let mut out = String::new();
    writeln!(
        out,
        "| engine | store | sessions | size | scenario | req/s | p50 µs | p99 µs | latchkey CPU µs/req | database CPU µs/req | RSS MiB | CPU vs smallest | p99 vs smallest | CPU vs same live set | p99 vs same live set |"
    )?;
    writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for r in &runs {
        // The baseline: the same engine and scenario on the smallest store,
        // nothing else going on.
        let base = runs
            .iter()
            .filter(|b| b.engine == r.engine && b.scenario == r.scenario && b.during.is_none())
            .min_by_key(|b| b.store_sessions.unwrap_or(u64::MAX));
        // What the store's size alone costs: the smallest store driven over
        // as many sessions; for a run beside the prune, the same store
        // without it.
        let same_live_set = match &r.during {
            Some(_) => runs.iter().find(|b| {
                b.engine == r.engine
                    && b.scenario == r.scenario
                    && b.store == r.store
                    && b.during.is_none()
            }),
            None => runs
                .iter()
                .filter(|b| {
                    b.engine == r.engine
                        && b.scenario == r.scenario
                        && b.live_set == r.live_set
                        && b.during.is_none()
                })
                .min_by_key(|b| b.store_sessions.unwrap_or(u64::MAX)),
        };
        let scenario = match &r.during {
            Some(d) => format!("{} (during {d})", r.scenario),
            None => r.scenario.clone(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.engine,
            r.store,
            r.store_sessions.map_or("-".into(), |n| n.to_string()),
            size(r.store_bytes),
            scenario,
            r.req_per_s,
            r.p50_us,
            r.p99_us,
            opt(r.server_cpu_us_per_req),
            opt(r.database_cpu_us_per_req),
            opt(r.server_rss_mib),
            ratio(total_cpu(r), base.and_then(total_cpu)),
            ratio(Some(r.p99_us as f64), base.map(|b| b.p99_us as f64)),
            ratio(total_cpu(r), same_live_set.and_then(total_cpu)),
            ratio(
                Some(r.p99_us as f64),
                same_live_set.map(|b| b.p99_us as f64)
            ),
        )?;
    }
    if !prunes.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "| engine | store | sessions pruned | longest batch ms | prune took s |"
        )?;
        writeln!(out, "|---|---|---|---|---|")?;
        for p in &prunes {
            writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} |",
                p.engine,
                p.store,
                p.sessions_deleted,
                p.longest_batch_ms,
                p.took_ms as f64 / 1000.0
            )?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_store_against_its_engines_smallest_and_its_live_set() {
        let text = r#"
{"engine":"SQLite","store":"10k","scenario":"refresh","store_sessions":10000,"live_set":10000,"req_per_s":10000,"p99_us":1000,"server_cpu_us_per_req":100.0}
{"engine":"SQLite","store":"100k","scenario":"refresh","store_sessions":100000,"live_set":100000,"req_per_s":9500,"p99_us":1200,"server_cpu_us_per_req":105.0}
{"engine":"SQLite","store":"10M","scenario":"refresh","store_sessions":10000000,"live_set":100000,"req_per_s":9000,"p99_us":1500,"server_cpu_us_per_req":110.0}
{"engine":"SQLite","store":"10M","scenario":"refresh","during":"prune","store_sessions":10000000,"live_set":100000,"req_per_s":8000,"p99_us":3000,"server_cpu_us_per_req":120.0}
{"engine":"PostgreSQL","store":"10k","scenario":"refresh","store_sessions":10000,"live_set":10000,"req_per_s":5000,"p99_us":2000,"server_cpu_us_per_req":60.0,"database_cpu_us_per_req":40.0}
{"engine":"PostgreSQL","store":"10M","scenario":"refresh","store_sessions":10000000,"live_set":100000,"req_per_s":5000,"p99_us":2000,"server_cpu_us_per_req":60.0,"database_cpu_us_per_req":60.0}
{"engine":"SQLite","store":"10M","sessions_deleted":5000000,"longest_batch_ms":4,"took_ms":61000}
"#;
        let md = markdown(text).unwrap();
        let rows: Vec<&str> = md.lines().collect();
        assert!(rows[5].contains("refresh (during prune)"), "{}", rows[5]);
        // The ratios against the 10k store, then against the same live set.
        for (row, ratios) in [
            (2, "| 1.00x | 1.00x | 1.00x | 1.00x |"),
            (4, "| 1.10x | 1.50x | 1.05x | 1.25x |"),
            // Beside the prune: against the same store without it.
            (5, "| 1.20x | 3.00x | 1.09x | 2.00x |"),
            // PostgreSQL's CPU counts the database's; no store of its live
            // set but itself.
            (7, "| 1.20x | 1.00x | 1.00x | 1.00x |"),
        ] {
            assert!(rows[row].ends_with(ratios), "{}", rows[row]);
        }
        assert!(md.contains("| SQLite | 10M | 5000000 | 4 | 61.0 |"), "{md}");
    }
}
