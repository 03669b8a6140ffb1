//! Where the refresh-token secret lives without a master key: in a file
//! beside the database, readable by its owner only, so that a copy of the
//! database alone mints no refresh token.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use latchkey_core::crypto::random_bytes;
use latchkey_core::store::{StoreError, StoreResult};

use crate::keys::secret_or_insert;
use crate::SqliteStore;

pub(crate) async fn refresh_secret(store: &SqliteStore) -> StoreResult<Vec<u8>> {
    let fresh = || random_bytes::<32>().map_err(|e| StoreError::Unavailable(e.to_string()));
    match store.secret_file.clone() {
        Some(path) => tokio::task::spawn_blocking(move || key_file(&path, &fresh()?))
            .await
            .map_err(|e| StoreError::Unavailable(format!("secret file task: {e}")))?,
        None => secret_or_insert(store, "refresh_mac", &fresh()?).await,
    }
}

/// Reads the 32-byte secret, creating it (mode 0600) with `candidate` on
/// first use; a file others may read is refused, since it mints refresh
/// tokens.
fn key_file(path: &Path, candidate: &[u8]) -> StoreResult<Vec<u8>> {
    let unreadable =
        |e: std::io::Error| StoreError::Unavailable(format!("cannot read {}: {e}", path.display()));
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(unreadable)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(StoreError::Unsafe(format!(
                    "{} is readable by others: it must be the owner's only (chmod 600 {})",
                    path.display(),
                    path.display()
                )));
            }
            if bytes.len() != 32 {
                return Err(StoreError::Corrupt(format!(
                    "{} is not a 32-byte secret",
                    path.display()
                )));
            }
            return Ok(bytes);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable(e)),
    }
    // Written whole under another name, then linked into place: a reader
    // (another process starting now) sees no file or all of it, never a
    // partial one, and the link fails if someone else's came first.
    let suffix = random_bytes::<8>()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{suffix}.tmp"));
    let staging = std::path::PathBuf::from(staging);
    let failed = |e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staging)
        .and_then(|mut file| file.write_all(candidate).and_then(|()| file.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(failed(e));
    }
    let linked = std::fs::hard_link(&staging, path);
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => Ok(candidate.to_vec()),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(path, candidate),
        Err(e) => Err(failed(e)),
    }
}
