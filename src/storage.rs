//! Storage root resolution and Delta table locations.
//!
//! Every table lives at `<root>/<layer>/<table>`. The root is a local path or an
//! object-store URL; credentials and endpoints come from `[storage.options]` and
//! the usual environment variables, which deltalake's object-store builders read.

use std::collections::HashMap;
use std::path::Path;

use deltalake::{DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::config::StorageConfig;
use crate::error::{Error, Result};

/// The resolved storage root.
#[derive(Debug, Clone)]
pub struct StorageRoot {
    url: Url,
    options: HashMap<String, String>,
}

impl StorageRoot {
    /// Resolves `[storage]`: a plain path becomes an absolute `file://` URL
    /// (the folder is created), a URL is kept as is.
    pub fn from_config(config: &StorageConfig) -> Result<Self> {
        let url = parse_root(&config.root)?;
        let options = config
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self { url, options })
    }

    /// A local root, for tests and the embedded default.
    pub fn local(path: &Path) -> Result<Self> {
        Ok(Self {
            url: local_url(path)?,
            options: HashMap::new(),
        })
    }

    /// The root URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The storage options passed to deltalake.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of table `name` in `layer`.
    pub fn table_url(&self, layer: &str, name: &str) -> Result<Url> {
        let mut base = self.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(&format!("{layer}/{name}/"))
            .map_err(|e| Error::Storage {
                location: self.url.to_string(),
                message: format!("cannot build the location of {layer}/{name}: {e}"),
            })
    }

    /// Opens table `name` in `layer`: loaded when it exists, uninitialised
    /// (version `None`) when it does not yet.
    pub async fn open_table(&self, layer: &str, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(layer, name)?;
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        let mut table = DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| Error::delta(url.as_str(), e))?
            .with_storage_options(self.options.clone())
            .build()
            .map_err(|e| Error::delta(url.as_str(), e))?;
        // Probe first: loading a location without a log makes the kernel log
        // an error, which is noise for a table we are about to create.
        let exists = table
            .verify_deltatable_existence()
            .await
            .map_err(|e| Error::delta(url.as_str(), e))?;
        if !exists {
            return Ok(table);
        }
        match table.load().await {
            Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
            Err(e) => Err(Error::delta(url.as_str(), e)),
        }
    }
}

/// The URL of a data file of `table`, given the path an `add` or `remove`
/// action holds (relative to the table, or already absolute).
pub fn data_file_url(table: &DeltaTable, path: &str) -> String {
    if path.contains("://") {
        return path.to_string();
    }
    let mut root = table.table_url().to_string();
    if !root.ends_with('/') {
        root.push('/');
    }
    format!("{root}{path}")
}

fn parse_root(root: &str) -> Result<Url> {
    let has_scheme = root.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    });
    if has_scheme {
        let url = Url::parse(root).map_err(|e| Error::Storage {
            location: root.to_string(),
            message: format!("invalid storage URL: {e}"),
        })?;
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| Error::Storage {
                location: root.to_string(),
                message: "invalid file URL".into(),
            })?;
            return local_url(&path);
        }
        return Ok(url);
    }
    local_url(Path::new(root))
}

fn local_url(path: &Path) -> Result<Url> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    let absolute = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    Url::from_directory_path(&absolute).map_err(|()| Error::Storage {
        location: absolute.display().to_string(),
        message: "cannot turn the path into a URL".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_root_and_table_urls() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::local(dir.path()).unwrap();
        let url = root.table_url("bronze", "events").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/bronze/events/"), "{url}");
    }

    #[test]
    fn object_store_urls_are_kept() {
        let config = StorageConfig {
            root: "s3://lake/prefix".into(),
            options: Default::default(),
        };
        let root = StorageRoot::from_config(&config).unwrap();
        assert_eq!(
            root.table_url("silver", "dim_customer").unwrap().as_str(),
            "s3://lake/prefix/silver/dim_customer/"
        );
    }
}
