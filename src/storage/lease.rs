//! Leases: at most one run of a job kind at a time across every scheduler
//! (and manual run) sharing a storage root.
//!
//! A lease is a sequence of small JSON objects under
//! `<root>/_lakehouse/leases/<name>/<generation>.json`, each holding the
//! owner and an expiry. Every change (acquire, renew, release) writes the
//! next generation with a conditional create (`PutMode::Create`: `O_EXCL`
//! semantics on local disks, `If-None-Match: *` on S3 and Azure), so two
//! processes can never both write generation `n + 1`: the loser learns it
//! does not hold the lease. A lease whose latest generation expired (its
//! owner died or stalled) is taken over by writing the next generation.
//! Only generations are created, never updated, because conditional updates
//! are not supported by every store (local files). Owners renew every third
//! of the time to live; clocks of the hosts must agree to well within it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake::DeltaTableBuilder;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, StorageError};
use crate::storage::StorageRoot;

/// Folder of the leases under the storage root.
pub const LEASES_DIR: &str = "_lakehouse/leases";

/// The content of one lease generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseBody {
    /// Who holds it (`host:pid:id`).
    pub owner: String,
    /// When it lapses unless renewed (ms since the epoch; `0`: released).
    pub expires_at_ms: i64,
}

impl LeaseBody {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at_ms > now.timestamp_millis()
    }
}

/// The result of trying to take a lease.
#[derive(Debug)]
pub enum Acquire {
    /// Taken.
    Held(Arc<Lease>),
    /// Someone holds it.
    Busy {
        /// The holder.
        owner: String,
        /// When it lapses unless renewed.
        expires_at: DateTime<Utc>,
    },
}

/// The lease objects of one storage root.
#[derive(Debug)]
pub struct LeaseStore {
    store: Arc<dyn ObjectStore>,
    location: String,
    owner: String,
    ttl: Duration,
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<LeaseStore>,
    name: String,
    generation: AtomicU64,
}

impl LeaseStore {
    /// The leases under `root`, taken as `owner` for `ttl` at a time.
    pub fn open(root: &StorageRoot, owner: &str, ttl: Duration) -> Result<Arc<Self>> {
        let url = root.table_url("_lakehouse", "leases")?;
        let location = url.to_string();
        let log_store = DeltaTableBuilder::from_url(url)
            .map_err(|e| Error::delta(&location, e))?
            .with_storage_options(root.options().clone())
            .build_storage()
            .map_err(|e| Error::delta(&location, e))?;
        Ok(Arc::new(Self {
            store: log_store.object_store(None),
            location,
            owner: owner.to_string(),
            ttl,
        }))
    }

    /// This process's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::from(StorageError::Location {
            location: self.location.clone(),
            message: format!("lease {what}: {e}"),
        })
    }

    fn path(name: &str, generation: u64) -> ObjectPath {
        ObjectPath::from(format!("{name}/{generation:020}.json"))
    }

    /// The latest generation of lease `name` and its body.
    pub async fn latest(&self, name: &str) -> Result<Option<(u64, LeaseBody)>> {
        let prefix = ObjectPath::from(name);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(name, e))?;
        let newest = objects
            .iter()
            .filter_map(|o| {
                o.location
                    .filename()
                    .and_then(|f| f.strip_suffix(".json"))
                    .and_then(|g| g.parse::<u64>().ok())
            })
            .max();
        let Some(generation) = newest else {
            return Ok(None);
        };
        let bytes = match self.store.get(&Self::path(name, generation)).await {
            Ok(get) => get.bytes().await.map_err(|e| self.err(name, e))?,
            // Deleted by a cleanup between list and get: a newer one exists.
            Err(object_store::Error::NotFound { .. }) => return Box::pin(self.latest(name)).await,
            Err(e) => return Err(self.err(name, e)),
        };
        let body: LeaseBody = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(name, format!("unreadable generation {generation}: {e}")))?;
        Ok(Some((generation, body)))
    }

    /// Writes generation `generation`; `false` when it already exists.
    async fn create(&self, name: &str, generation: u64, expires_at_ms: i64) -> Result<bool> {
        let body = LeaseBody {
            owner: self.owner.clone(),
            expires_at_ms,
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| self.err(name, e))?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(
                &Self::path(name, generation),
                PutPayload::from(bytes),
                options,
            )
            .await
        {
            Ok(_) => {
                if generation >= 2 {
                    // Keep the last two generations; older ones are history.
                    let _ = self.store.delete(&Self::path(name, generation - 2)).await;
                }
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(name, e)),
        }
    }

    fn expiry(&self) -> i64 {
        Utc::now().timestamp_millis() + self.ttl.as_millis() as i64
    }

    /// Takes lease `name` unless someone else holds a live generation of it.
    pub async fn acquire(self: &Arc<Self>, name: &str) -> Result<Acquire> {
        let now = Utc::now();
        let next = match self.latest(name).await? {
            Some((_, body)) if body.live(now) => {
                return Ok(Acquire::Busy {
                    expires_at: DateTime::from_timestamp_millis(body.expires_at_ms).unwrap_or(now),
                    owner: body.owner,
                });
            }
            Some((generation, _)) => generation + 1,
            None => 1,
        };
        if !self.create(name, next, self.expiry()).await? {
            // Another process wrote the same generation first.
            let (owner, expires_at) = match self.latest(name).await? {
                Some((_, b)) => (
                    b.owner,
                    DateTime::from_timestamp_millis(b.expires_at_ms).unwrap_or(now),
                ),
                None => ("unknown".to_string(), now),
            };
            return Ok(Acquire::Busy { owner, expires_at });
        }
        Ok(Acquire::Held(Arc::new(Lease {
            leases: self.clone(),
            name: name.to_string(),
            generation: AtomicU64::new(next),
        })))
    }
}

impl Lease {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Extends the lease; `false` when it was lost (taken over after it lapsed).
    pub async fn renew(&self) -> Result<bool> {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        let renewed = self
            .leases
            .create(&self.name, next, self.leases.expiry())
            .await?;
        if renewed {
            self.generation.store(next, Ordering::SeqCst);
        }
        Ok(renewed)
    }

    /// Gives the lease up (a generation that is already expired).
    pub async fn release(&self) -> Result<()> {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        if self.leases.create(&self.name, next, 0).await? {
            self.generation.store(next, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Renews the lease every third of its time to live until it is lost;
    /// the task ends with the reason. Renewal errors are retried until the
    /// lease would have lapsed.
    pub fn keep_alive(self: &Arc<Self>) -> tokio::task::JoinHandle<String> {
        let lease = self.clone();
        tokio::spawn(async move {
            let ttl = lease.leases.ttl;
            let mut valid_until = tokio::time::Instant::now() + ttl;
            loop {
                tokio::time::sleep(ttl / 3).await;
                match lease.renew().await {
                    Ok(true) => valid_until = tokio::time::Instant::now() + ttl,
                    Ok(false) => {
                        return format!("lease `{}` was taken over by another process", lease.name);
                    }
                    Err(error) => {
                        tracing::warn!(lease = %lease.name, %error, "cannot renew the lease; retrying");
                        if tokio::time::Instant::now() >= valid_until {
                            return format!("lease `{}` lapsed: {error}", lease.name);
                        }
                    }
                }
            }
        })
    }
}

/// What [`exclusively`] did.
#[derive(Debug)]
pub enum Exclusive<T> {
    /// The work ran under the lease.
    Done(T),
    /// Another process holds the lease; nothing ran.
    Busy {
        /// The holder.
        owner: String,
    },
}

/// Runs `work` (`what`, for logs and errors: "the compaction of
/// bronze.bronze_events") while holding lease `name`, renewing it every
/// third of `ttl`; returns [`Exclusive::Busy`] without running `work` when
/// someone else holds it. If the lease is lost (this process stalled past
/// its lifetime and another took it over), `work` is dropped before it
/// commits and the error says so.
pub async fn exclusively<T, F>(
    root: &StorageRoot,
    name: &str,
    what: &str,
    ttl: Duration,
    work: F,
) -> Result<Exclusive<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let leases = LeaseStore::open(root, &owner_id(), ttl)?;
    let lease = match leases.acquire(name).await? {
        Acquire::Held(lease) => lease,
        Acquire::Busy { owner, .. } => {
            tracing::info!(lease = name, %owner, "another process holds the lease of {what}; skipped");
            return Ok(Exclusive::Busy { owner });
        }
    };
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            done = &mut work => break done.map(Exclusive::Done),
            _ = tokio::time::sleep(ttl / 3) => match lease.renew().await {
                Ok(true) => {}
                Ok(false) => break Err(Error::Condition(format!(
                    "the lease of {what} lapsed and was taken over; \
                     {what} was abandoned before committing"
                ))),
                Err(e) => break Err(e),
            },
        }
    };
    if let Err(error) = lease.release().await {
        // It lapses by itself after the ttl.
        tracing::warn!(lease = name, %error, "cannot release the lease of {what}");
    }
    result
}

/// An owner id for this process: host, pid and a random suffix.
pub fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &id[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_takeover_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::local(dir.path()).unwrap();
        let a = LeaseStore::open(&root, "a", Duration::from_millis(300)).unwrap();
        let b = LeaseStore::open(&root, "b", Duration::from_millis(300)).unwrap();
        let Acquire::Held(held) = a.acquire("silver").await.unwrap() else {
            panic!("a should get the free lease");
        };
        match b.acquire("silver").await.unwrap() {
            Acquire::Busy { owner, .. } => assert_eq!(owner, "a"),
            Acquire::Held(_) => panic!("b must not get a held lease"),
        }
        assert!(held.renew().await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        // a stalled past its expiry: b takes over and a's renewal fails.
        let Acquire::Held(taken) = b.acquire("silver").await.unwrap() else {
            panic!("b should take over an expired lease");
        };
        assert!(!held.renew().await.unwrap());
        taken.release().await.unwrap();
        assert!(matches!(
            a.acquire("silver").await.unwrap(),
            Acquire::Held(_)
        ));
    }
}
