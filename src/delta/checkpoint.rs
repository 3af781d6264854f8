//! Delta checkpoints every `[maintenance] checkpoint_interval` commits.
//!
//! deltalake's post-commit hook only checkpoints at multiples of the table
//! property `delta.checkpointInterval` (100 by default), which none of our
//! tables set; setting it on existing tables would be a metadata commit that
//! makes gold rebuild. So the writers call [`checkpoint_if_due`] after their
//! commits: it reads `_delta_log/_last_checkpoint` (one small object) and
//! writes a checkpoint when `interval` commits have followed the last one.
//! Readers then load a table from the checkpoint plus at most `interval`
//! JSON commits, whatever the table's age.

use deltalake::DeltaTable;
use object_store::ObjectStoreExt as _;

use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// The version of the table's last checkpoint, from `_last_checkpoint`
/// (`None`: no checkpoint yet).
pub async fn last_checkpoint(table: &DeltaTable, name: &str) -> Result<Option<i64>> {
    let log_store = table.log_store();
    let path = log_store.log_path().clone().join("_last_checkpoint");
    let bytes = match log_store.object_store(None).get(&path).await {
        Ok(result) => result
            .bytes()
            .await
            .map_err(|e| Error::delta(name, e.into()))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::delta(name, e.into())),
    };
    let hint: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Condition(format!(
            "{name}: _delta_log/_last_checkpoint is not valid JSON: {e}"
        ))
    })?;
    Ok(hint.get("version").and_then(serde_json::Value::as_i64))
}

/// Whether a table at `version` whose last checkpoint is `last` needs one.
pub fn is_due(version: i64, last: Option<i64>, interval: u64) -> bool {
    interval > 0 && version - last.unwrap_or(-1) >= interval as i64
}

/// Writes a checkpoint of the loaded `table` when `interval` commits have
/// followed the last one. Returns the version checkpointed.
pub async fn checkpoint_if_due(
    table: &DeltaTable,
    name: &str,
    interval: u64,
) -> Result<Option<i64>> {
    let Some(version) = super::version(table) else {
        return Ok(None);
    };
    if interval == 0 || !is_due(version, last_checkpoint(table, name).await?, interval) {
        return Ok(None);
    }
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(|e| Error::delta(name, e))?;
    tracing::debug!(table = name, version, "delta checkpoint written");
    Ok(Some(version))
}

/// [`checkpoint_if_due`] for tables a run committed to, by name: each is
/// only loaded when a checkpoint is due.
pub async fn checkpoint_tables(
    root: &StorageRoot,
    layer: &str,
    committed: Vec<(String, i64)>,
    interval: u64,
) -> Result<()> {
    if interval == 0 {
        return Ok(());
    }
    for (name, version) in committed {
        let url = root.table_url(layer, &name)?;
        // An unloaded handle is enough to read `_last_checkpoint`.
        let handle = deltalake::DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| Error::delta(url.as_str(), e))?
            .with_storage_options(root.options().clone())
            .build()
            .map_err(|e| Error::delta(url.as_str(), e))?;
        if is_due(version, last_checkpoint(&handle, &name).await?, interval) {
            let table = root.open_table(layer, &name).await?;
            checkpoint_if_due(&table, &name, interval).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_due;

    #[test]
    fn due_after_interval_commits() {
        assert!(!is_due(8, None, 10));
        assert!(is_due(9, None, 10));
        assert!(!is_due(18, Some(9), 10));
        assert!(is_due(19, Some(9), 10));
        assert!(!is_due(1_000, None, 0));
    }
}
