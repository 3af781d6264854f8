//! `[storage]`: where the Delta tables live.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[storage]`: the storage root of every layer. `Debug` masks secret
/// option values (implemented in [`crate::storage`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// A local path, `file://`, `s3://bucket/prefix`, `az://container/prefix`,
    /// `abfss://container@account.dfs.core.windows.net/prefix` or
    /// `abfss://container/prefix` (account from the options or environment).
    pub root: String,
    /// Options passed to object_store / deltalake (e.g. `aws_endpoint_url`).
    pub options: BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            root: "./lakehouse-data".to_string(),
            options: BTreeMap::new(),
        }
    }
}
