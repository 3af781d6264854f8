//! The startup check: is the storage root reachable and writable?
//!
//! A wrong endpoint, bad credentials or a missing bucket otherwise surface deep
//! inside a job, after minutes of object_store retries, as a raw HTTP error.
//! [`StorageRoot::check`] writes, reads back and deletes a small probe object
//! under `<root>/_lakehouse/` with few retries, and classifies what failed. It
//! also proves the store honours create-only writes (If-None-Match: *), which
//! is how deltalake 1.1 commits on S3, Azure and local storage alike: a store
//! that ignores them would let two writers overwrite each other's commit.

use std::collections::HashMap;

use deltalake::DeltaTableBuilder;
use deltalake::logstore::object_store::{
    ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, path::Path,
};

use super::StorageRoot;
use crate::error::{Error, Result, StorageError, StorageProblem};
use crate::redact;

/// Folder of lakehouse system objects under the root.
pub const SYSTEM_FOLDER: &str = "_lakehouse";

impl StorageRoot {
    /// Verifies that the root is reachable and writable: writes (create-only),
    /// reads back, writes again create-only (must be refused), and deletes
    /// `<root>/_lakehouse/probe/<uuid>`. Fails fast (one retry) with a
    /// [`StorageError::Check`] naming the problem; never shows secrets.
    pub async fn check(&self) -> Result<()> {
        if self.is_local()
            && let Ok(path) = self.url.to_file_path()
        {
            // Local roots: the folder exists (from_config created it); the
            // probe below still proves it is writable.
            std::fs::create_dir_all(path.join(SYSTEM_FOLDER)).map_err(|e| Error::io(&path, e))?;
        }
        let (location, store) = self.probe_store(SYSTEM_FOLDER)?;
        let probe = Path::from(uuid::Uuid::new_v4().simple().to_string());
        let body = format!(
            "lakehouse storage probe {}",
            chrono::Utc::now().to_rfc3339()
        );
        // Written the way deltalake 1.1 writes `_delta_log/N.json` on every
        // store: a create-only (If-None-Match: *) PUT.
        store
            .put_opts(
                &probe,
                PutPayload::from(body.clone().into_bytes()),
                create(),
            )
            .await
            .map_err(|e| check_error(&location, &e))?;
        let read = async {
            let bytes = store.get(&probe).await?.bytes().await?;
            Ok::<_, deltalake::ObjectStoreError>(bytes)
        }
        .await;
        let second = store
            .put_opts(&probe, PutPayload::from_static(b"second writer"), create())
            .await;
        let deleted = store.delete(&probe).await;
        let bytes = read.map_err(|e| check_error(&location, &e))?;
        if bytes.as_ref() != body.as_bytes() {
            return Err(StorageError::Check {
                location,
                problem: StorageProblem::NotReadable,
                detail: format!("read {} bytes back, wrote {}", bytes.len(), body.len()),
            }
            .into());
        }
        match second {
            Err(deltalake::ObjectStoreError::AlreadyExists { .. }) => {}
            Ok(_) => {
                return Err(StorageError::Check {
                    location,
                    problem: StorageProblem::NoConditionalWrites,
                    detail: "a second create-only write of the probe object succeeded".into(),
                }
                .into());
            }
            Err(e) => return Err(check_error(&location, &e)),
        }
        deleted.map_err(|e| check_error(&location, &e))?;
        tracing::info!(root = %location, "storage reachable and writable");
        Ok(())
    }

    /// Verifies that the root is reachable and readable, writing nothing:
    /// the check of commands that only read (`query`, `status`), which must
    /// work with read-only credentials. Lists `<root>/_lakehouse/probe`.
    pub async fn check_readable(&self) -> Result<()> {
        let (location, store) = self.probe_store(SYSTEM_FOLDER)?;
        store
            .list_with_delimiter(None)
            .await
            .map_err(|e| check_error(&location, &e))?;
        tracing::info!(root = %location, "storage reachable and readable");
        Ok(())
    }

    /// The root's description and a fail-fast store on `<root>/<folder>/probe`.
    fn probe_store(
        &self,
        folder: &str,
    ) -> Result<(
        String,
        std::sync::Arc<dyn deltalake::logstore::object_store::ObjectStore>,
    )> {
        let location = self.describe();
        let url = self.table_url(folder, "probe")?;
        let mut options: HashMap<String, String> = self.options.clone();
        // Fail fast: object_store's default retries a refused connection for minutes.
        options
            .entry("max_retries".into())
            .or_insert_with(|| "1".into());
        options
            .entry("retry_timeout".into())
            .or_insert_with(|| "10s".into());
        let store = DeltaTableBuilder::from_url(url)
            .and_then(|b| b.with_storage_options(options).build_storage())
            .map_err(|e| check_error(&location, &e))?
            .object_store(None);
        Ok((location, store))
    }
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

/// The error and its whole source chain, redacted, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    redact::redact(&text)
}

/// Classifies a failed probe from the error text (object_store keeps the
/// server's error code and the HTTP status in it).
pub fn classify(detail: &str) -> StorageProblem {
    let lower = detail.to_ascii_lowercase();
    let any = |words: &[&str]| {
        words
            .iter()
            .any(|w| lower.contains(&w.to_ascii_lowercase()))
    };
    if any(&[
        "NoSuchBucket",
        "ContainerNotFound",
        "bucket does not exist",
        "container does not exist",
    ]) {
        StorageProblem::MissingBucket
    } else if any(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "403 Forbidden",
        "status: 403",
        "Client error with status 403",
        "401 Unauthorized",
    ]) {
        StorageProblem::AccessDenied
    } else if any(&[
        "connection refused",
        "error sending request",
        "dns error",
        "failed to lookup address",
        "timed out",
        "operation timed out",
        "connection reset",
        "tcp connect error",
    ]) {
        StorageProblem::Unreachable
    } else {
        StorageProblem::Other
    }
}

fn check_error(location: &str, error: &(dyn std::error::Error + 'static)) -> Error {
    let detail = chain(error);
    StorageError::Check {
        location: location.to_string(),
        problem: classify(&detail),
        detail,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify("Client error with status 404 Not Found: <Code>NoSuchBucket</Code>"),
            StorageProblem::MissingBucket
        );
        assert_eq!(
            classify("<Code>SignatureDoesNotMatch</Code>"),
            StorageProblem::AccessDenied
        );
        assert_eq!(
            classify("error sending request: tcp connect error: Connection refused (os error 111)"),
            StorageProblem::Unreachable
        );
    }

    #[tokio::test]
    async fn local_root_passes() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::local(dir.path()).unwrap();
        root.check().await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join(SYSTEM_FOLDER).join("probe"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "probe left behind: {left:?}");
    }
}
