//! Bare Argon2id hashing throughput on N threads: the ceiling of what a
//! login endpoint can reach on this machine.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::report::{new_histogram, RunReport, HASH};

/// OWASP's Argon2id parameters, as latchkey hashes passwords.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;

/// Hashes on `threads` threads for `warmup` + `duration`, counting the hashes
/// that complete inside the measured window.
pub fn run(threads: usize, duration: Duration, warmup: Duration) -> Result<RunReport> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, Some(32))
        .map_err(|e| anyhow!("argon2 parameters: {e}"))?;
    let start = Instant::now();
    let measure_start = start + warmup;
    let end = measure_start + duration;
    let results: Vec<Result<(u64, hdrhistogram::Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let params = params.clone();
                s.spawn(move || -> Result<(u64, hdrhistogram::Histogram<u64>)> {
                    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                    let mut hist = new_histogram()?;
                    let mut count = 0u64;
                    let mut out = [0u8; 32];
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let mut salt = [0u8; 16];
                        salt[..8].copy_from_slice(&(t as u64).to_le_bytes());
                        salt[8..].copy_from_slice(&n.to_le_bytes());
                        n += 1;
                        let t0 = Instant::now();
                        argon2
                            .hash_password_into(b"correct horse battery", &salt, &mut out)
                            .map_err(|e| anyhow!("argon2: {e}"))?;
                        let t1 = Instant::now();
                        if t1 >= measure_start && t1 <= end {
                            count += 1;
                            let us = u64::try_from((t1 - t0).as_micros()).unwrap_or(u64::MAX);
                            hist.saturating_record(us.max(1));
                        }
                    }
                    Ok((count, hist))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a hashing thread panicked"))
                    .and_then(|r| r)
            })
            .collect()
    });
    let mut hist = new_histogram()?;
    let mut report = RunReport {
        label: Some(HASH.to_owned()),
        target: HASH.to_owned(),
        scenario: "hash".to_owned(),
        path: format!("m={MEMORY_KIB},t={ITERATIONS},p={LANES}"),
        connections: threads,
        warmup: warmup.as_secs_f64(),
        client_threads: threads,
        ..RunReport::default()
    };
    for r in results {
        let (count, h) = r?;
        report.ok += count;
        hist.add(&h)?;
    }
    report.finish(&hist, duration);
    Ok(report)
}
