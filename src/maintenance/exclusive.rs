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

use crate::error::Result;
use crate::storage::StorageRoot;
pub use crate::storage::lease::Exclusive;

/// Lifetime of a compaction lease without renewal; renewed every third.
const LEASE_TTL: Duration = Duration::from_secs(60);

/// Runs `work`, a compaction of `table` (`layer.name`), while holding the
/// table's compaction lease (see [`crate::storage::lease::exclusively`]);
/// returns [`Exclusive::Busy`] without running `work` when another
/// compaction holds it.
pub async fn exclusively<T, F>(root: &StorageRoot, table: &str, work: F) -> Result<Exclusive<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    crate::storage::lease::exclusively(
        root,
        &format!("compact-{table}"),
        &format!("the compaction of {table}"),
        LEASE_TTL,
        work,
    )
    .await
}
