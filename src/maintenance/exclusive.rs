//! One compaction of a table at a time, across processes.
//!
//! deltalake 1.1 retries an `optimize` commit over a concurrent one and its
//! conflict checker ignores removals marked `dataChange = false`, so two
//! compactions of the same files would both land, keeping two copies of
//! their rows. Every compaction (`lakehouse optimize`, scheduled or manual,
//! and bronze's auto-compaction in each consumer process) therefore holds the
//! table's compaction lease (see [`crate::storage::lease`]: a conditional
//! create on the storage itself, so it works across hosts and stores) while
//! it runs; a compaction that finds the lease held skips the table.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::storage::lease::{Acquire, LeaseStore, owner_id};

/// Lifetime of a compaction lease without renewal; renewed every third.
const LEASE_TTL: Duration = Duration::from_secs(60);

/// What [`exclusively`] did.
#[derive(Debug)]
pub enum Exclusive<T> {
    /// The work ran under the lease.
    Done(T),
    /// Another compaction of the table holds the lease; nothing ran.
    Busy {
        /// The holder.
        owner: String,
    },
}

/// Runs `work`, a compaction of `table` (`layer.name`), while holding the
/// table's compaction lease, renewing it; returns [`Exclusive::Busy`]
/// without running `work` when someone else holds it. If the lease is lost
/// (this process stalled past its lifetime), `work` is dropped before it
/// commits and the error says so.
pub async fn exclusively<T, F>(root: &StorageRoot, table: &str, work: F) -> Result<Exclusive<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let leases = LeaseStore::open(root, &owner_id(), LEASE_TTL)?;
    let lease = match leases.acquire(&format!("compact-{table}")).await? {
        Acquire::Held(lease) => lease,
        Acquire::Busy { owner, .. } => {
            tracing::info!(table, %owner, "another process is compacting the table; skipped");
            return Ok(Exclusive::Busy { owner });
        }
    };
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            done = &mut work => break done.map(Exclusive::Done),
            _ = tokio::time::sleep(LEASE_TTL / 3) => match lease.renew().await {
                Ok(true) => {}
                Ok(false) => break Err(Error::Condition(format!(
                    "the compaction lease of {table} lapsed and was taken over; \
                     this compaction was abandoned before committing"
                ))),
                Err(e) => break Err(e),
            },
        }
    };
    if let Err(error) = lease.release().await {
        // It lapses by itself after LEASE_TTL.
        tracing::warn!(table, %error, "cannot release the compaction lease");
    }
    result
}
