//! Argon2id password hashing, off the async workers, behind a bounded queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
#[cfg(test)]
use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ServiceError;

/// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
pub const OWASP_MEMORY_KIB: u32 = 19 * 1024;
pub const OWASP_ITERATIONS: u32 = 2;
pub const OWASP_LANES: u32 = 1;

/// How long a client told "busy" should wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Hashes and checks passwords on the blocking pool. At most `workers`
/// hashes run at once; at most `queue` more wait; beyond that callers get
/// [`ServiceError::Busy`] at once, so a flood of logins never grows memory
/// or latency without bound.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    admission_size: usize,
    /// A hash of a random password, checked for unknown users so that they
    /// cost the same as known ones.
    decoy_hash: Arc<String>,
    memory: Arc<MemoryPool>,
}

impl PasswordHasher {
    pub fn new(queue: usize) -> Result<Self, ServiceError> {
        let params = Params::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_LANES, None)
            .map_err(|e| ServiceError::Internal(format!("argon2 parameters: {e}")))?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut decoy = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut decoy);
        let decoy_password = base64_url(&decoy);
        let memory = Arc::new(MemoryPool {
            sets: Mutex::new(Vec::new()),
            keep: workers,
        });
        let decoy_hash =
            memory.with(|blocks| hash_with_memory(&params, decoy_password.as_bytes(), blocks))?;
        Ok(Self {
            params,
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
            admission_size: workers + queue,
            decoy_hash: Arc::new(decoy_hash),
            memory,
        })
    }

    /// Requests admitted and not yet finished (hashing or waiting).
    pub fn queue_depth(&self) -> usize {
        self.admission_size - self.admission.available_permits()
    }

    /// Takes a place in the queue, or answers [`ServiceError::Busy`] at
    /// once when it is full. Taken before anything else is done for a
    /// login, so that a flood costs nothing past the queue.
    pub fn admit(&self) -> Result<Admitted, ServiceError> {
        let permit =
            self.admission
                .clone()
                .try_acquire_owned()
                .map_err(|_| ServiceError::Busy {
                    retry_after: BUSY_RETRY_AFTER,
                })?;
        Ok(Admitted {
            hasher: self.clone(),
            _permit: permit,
        })
    }

    /// A PHC string for a new password.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        self.admit()?.hash(password).await
    }

    /// [`Admitted::verify`], queueing first.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, ServiceError> {
        self.admit()?.verify(password, stored).await
    }
}

/// A place in the hashing queue: the hashes it runs wait for a worker.
pub struct Admitted {
    hasher: PasswordHasher,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Admitted {
    /// A PHC string for a new password.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        let params = self.hasher.params.clone();
        let memory = self.hasher.memory.clone();
        self.run(move || {
            memory.with(|blocks| hash_with_memory(&params, password.as_bytes(), blocks))
        })
        .await?
    }

    /// Checks a password against a stored PHC string, or against the decoy
    /// when there is none (unknown user), so both cost one hash.
    /// Answers whether it matched and whether the stored hash should be
    /// replaced because the parameters changed.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, ServiceError> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        let known = stored.is_some();
        let phc = stored
            .map(str::to_owned)
            .unwrap_or_else(|| self.hasher.decoy_hash.as_ref().clone());
        let params = self.hasher.params.clone();
        let memory = self.hasher.memory.clone();
        self.run(move || {
            // The decoy must cost a real verification too: it runs either way.
            let matched =
                memory.with(|blocks| matches_phc(&phc, password.as_bytes(), blocks)) && known;
            let needs_rehash = matched
                && PasswordHash::new(&phc)
                    .ok()
                    .and_then(|parsed| Params::try_from(&parsed).ok())
                    .is_none_or(|p| {
                        (p.m_cost(), p.t_cost(), p.p_cost())
                            != (params.m_cost(), params.t_cost(), params.p_cost())
                    });
            Verified {
                matched,
                needs_rehash,
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let _worker = self
            .hasher
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("password pool closed".into()))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(job))
            .await
            .map_err(|e| ServiceError::Internal(format!("password job: {e}")))
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub matched: bool,
    pub needs_rehash: bool,
}

fn argon2_with(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Checks `password` against an Argon2id PHC string, computing in `blocks`
/// (grown as needed). Anything unparsable simply does not match.
fn matches_phc(phc: &str, password: &[u8], blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let needed = params.block_count();
    if blocks.len() < needed {
        blocks.resize(needed, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..needed]);
    computed.is_ok()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            out.as_slice(),
            expected.as_bytes(),
        ))
}

/// Argon2 working memory (19 MiB a block set), one set per worker, reused:
/// a fresh allocation per hash costs page faults and zeroing, and memory the
/// allocator's per-thread arenas keep for good.
struct MemoryPool {
    sets: Mutex<Vec<Vec<Block>>>,
    keep: usize,
}

impl MemoryPool {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<Block>) -> T) -> T {
        let mut blocks = self
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let out = f(&mut blocks);
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if sets.len() < self.keep {
            sets.push(blocks);
        }
        out
    }
}

/// A PHC string for `password`, computed in `blocks` (grown as needed).
fn hash_with_memory(
    params: &Params,
    password: &[u8],
    blocks: &mut Vec<Block>,
) -> Result<String, ServiceError> {
    let failed = |e: &dyn std::fmt::Display| ServiceError::Internal(format!("argon2: {e}"));
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|e| failed(&e))?;
    let needed = params.block_count();
    if blocks.len() < needed {
        blocks.resize(needed, Block::default());
    }
    let mut out = [0u8; 32];
    argon2_with(params)
        .hash_password_into_with_memory(password, salt_bytes, &mut out, &mut blocks[..needed])
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

#[cfg(test)]
fn hash_with(params: &Params, password: &str) -> Result<String, ServiceError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2_with(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hasher = PasswordHasher::new(4).unwrap();
        let phc = hasher.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let ok = hasher.verify("correct horse", Some(&phc)).await.unwrap();
        assert!(ok.matched && !ok.needs_rehash);
        assert!(!hasher.verify("wrong", Some(&phc)).await.unwrap().matched);
        assert!(!hasher.verify("correct horse", None).await.unwrap().matched);
    }

    #[tokio::test]
    async fn weaker_stored_hashes_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(4).unwrap();
        let weak = Params::new(8 * 1024, 1, 1, None).unwrap();
        let phc = hash_with(&weak, "pw123456").unwrap();
        let v = hasher.verify("pw123456", Some(&phc)).await.unwrap();
        assert!(v.matched && v.needs_rehash);
    }

    #[tokio::test]
    async fn reused_memory_gives_the_same_answers_whatever_ran_before() {
        let hasher = PasswordHasher::new(4).unwrap();
        let weak = hash_with(&Params::new(8 * 1024, 1, 1, None).unwrap(), "first pass").unwrap();
        let strong = hasher.hash("second pass").await.unwrap();
        for _ in 0..2 {
            assert!(
                hasher
                    .verify("first pass", Some(&weak))
                    .await
                    .unwrap()
                    .matched
            );
            assert!(
                !hasher
                    .verify("second pass", Some(&weak))
                    .await
                    .unwrap()
                    .matched
            );
            assert!(
                hasher
                    .verify("second pass", Some(&strong))
                    .await
                    .unwrap()
                    .matched
            );
            assert!(!hasher.verify("first pass", None).await.unwrap().matched);
        }
        assert!(
            !hasher
                .verify("x", Some("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"))
                .await
                .unwrap()
                .matched
        );
        assert!(
            !hasher
                .verify("x", Some("not a phc string"))
                .await
                .unwrap()
                .matched
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = PasswordHasher::new(0).unwrap();
        let workers = hasher.admission_size;
        let mut jobs = Vec::new();
        for _ in 0..workers {
            let h = hasher.clone();
            jobs.push(tokio::spawn(async move { h.hash("pw123456").await }));
        }
        // Let the spawned jobs take their permits.
        while hasher.queue_depth() < workers {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.hash("pw123456").await,
            Err(ServiceError::Busy { .. })
        ));
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert_eq!(hasher.queue_depth(), 0);
    }
}
