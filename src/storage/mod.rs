//! Storage root resolution and Delta table locations.
//!
//! Every table lives at `<root>/<layer>/<table>`. The root is a local path or an
//! object-store URL; credentials and endpoints come from `[storage.options]` and
//! the usual environment variables, which deltalake's object-store builders read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Once;

use deltalake::{DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::error::{Error, Result, StorageError};
use crate::redact;
pub use config::StorageConfig;

mod check;
mod config;
pub mod lease;

pub use crate::error::StorageProblem;

/// The resolved storage root.
///
/// `Debug` and `Display` never show secret values: anything printing storage
/// settings (status, logs, errors) goes through them or [`StorageRoot::describe`].
#[derive(Clone)]
pub struct StorageRoot {
    url: Url,
    options: HashMap<String, String>,
}

/// Registers deltalake's S3 and Azure object-store and log-store handlers.
/// deltalake also registers them from a constructor at load time; doing it
/// here as well keeps `s3://` and `az://` working if that is ever stripped.
pub fn register_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
}

impl StorageRoot {
    /// Resolves `[storage]`: a plain path becomes an absolute `file://` URL
    /// (the folder is created), a URL is kept as is. Object-store URLs are
    /// validated (bucket, container, Azure account) and their secrets are
    /// registered for redaction.
    pub fn from_config(config: &StorageConfig) -> Result<Self> {
        register_handlers();
        redact::register_env_secrets();
        let options: HashMap<String, String> = config
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in &options {
            if redact::is_secret_key(key) {
                redact::register_secret(value);
            }
        }
        if let Some((_, password)) = config.root.split_once("://").and_then(|(_, rest)| {
            let authority = rest.split('/').next()?;
            let userinfo = authority.rsplit_once('@')?.0;
            userinfo.split_once(':')
        }) {
            redact::register_secret(password);
        }
        let url = parse_root(&config.root)?;
        validate_remote(&url, &options)?;
        Ok(Self { url, options })
    }

    /// A local root, for tests and the embedded default.
    pub fn local(path: &Path) -> Result<Self> {
        Ok(Self {
            url: local_url(path)?,
            options: HashMap::new(),
        })
    }

    /// The root URL. May hold a password; print [`StorageRoot::describe`] instead.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The storage options passed to deltalake. May hold secrets; print
    /// [`StorageRoot::describe`] instead.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// Whether the root is on the local file system.
    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// The root URL for display: no password, no query string.
    pub fn redacted_url(&self) -> String {
        redact::redact_url(&self.url)
    }

    /// The root and its settings for display: the URL without secrets, the
    /// `[storage.options]` with secret values as `***`, and which standard
    /// environment variables for this kind of store are set (secret ones by
    /// name only).
    pub fn describe(&self) -> String {
        let mut out = self.redacted_url();
        let mut shown: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in &self.options {
            let value = if redact::is_secret_key(key) {
                redact::MASK.to_string()
            } else {
                redact::redact(value)
            };
            shown.insert(key.clone(), value);
        }
        let env_prefixes: &[&str] = match self.url.scheme() {
            "s3" | "s3a" => &["AWS_"],
            "az" | "abfs" | "abfss" | "adl" | "azure" => &["AZURE_", "AZURITE_"],
            _ => &[],
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in std::env::vars() {
            if env_prefixes.iter().any(|p| name.starts_with(p)) {
                let value = if redact::is_secret_key(&name) {
                    redact::MASK.to_string()
                } else {
                    redact::redact(&value)
                };
                env.insert(name, value);
            }
        }
        let join = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !shown.is_empty() {
            out.push_str(&format!(" (options: {})", join(&shown)));
        }
        if !env.is_empty() {
            out.push_str(&format!(" (env: {})", join(&env)));
        }
        out
    }

    /// Makes the root's object store (bucket or container level) known to
    /// `ctx`, so plans reading data files by their full URL (silver's change
    /// feed, gold's marts) can resolve `s3://` and `az://` paths. Local roots
    /// need nothing: DataFusion knows `file://`.
    pub fn register_object_store(&self, ctx: &datafusion::prelude::SessionContext) -> Result<()> {
        self.register_object_store_in(ctx.runtime_env().object_store_registry.as_ref())
    }

    /// [`Self::register_object_store`] into any runtime's registry (the
    /// Ballista scheduler's and executors', which read the lake too).
    pub fn register_object_store_in(
        &self,
        registry: &dyn datafusion::execution::object_store::ObjectStoreRegistry,
    ) -> Result<()> {
        if self.is_local() {
            return Ok(());
        }
        let shown = self.redacted_url();
        let store = DeltaTableBuilder::from_url(self.url.clone())
            .and_then(|b| b.with_storage_options(self.options.clone()).build_storage())
            .map_err(|e| Error::delta(&shown, e))?
            .root_object_store(None);
        registry.register_store(&self.url, store);
        Ok(())
    }

    /// The URL of table `name` in `layer`.
    pub fn table_url(&self, layer: &str, name: &str) -> Result<Url> {
        let mut base = self.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(&format!("{layer}/{name}/")).map_err(|e| {
            Error::from(StorageError::Location {
                location: self.redacted_url(),
                message: format!("cannot build the location of {layer}/{name}: {e}"),
            })
        })
    }

    /// Opens table `name` in `layer`: loaded when it exists, uninitialised
    /// (version `None`) when it does not yet.
    pub async fn open_table(&self, layer: &str, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(layer, name)?;
        let shown = redact::redact_url(&url);
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        let mut table = DeltaTableBuilder::from_url(url)
            .map_err(|e| Error::delta(&shown, e))?
            .with_storage_options(self.options.clone())
            .build()
            .map_err(|e| Error::delta(&shown, e))?;
        // Probe first: loading a location without a log makes the kernel log
        // an error, which is noise for a table we are about to create.
        let exists = table
            .verify_deltatable_existence()
            .await
            .map_err(|e| Error::delta(&shown, e))?;
        if !exists {
            return Ok(table);
        }
        match table.load().await {
            Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
            Err(e) => Err(Error::delta(&shown, e)),
        }
    }
}

impl fmt::Display for StorageRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let v = if redact::is_secret_key(k) {
                    redact::MASK
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("StorageConfig")
            .field("root", &redact::redact_root(&self.root))
            .field("options", &options)
            .finish()
    }
}

impl fmt::Debug for StorageRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageRoot")
            .field("root", &self.describe())
            .finish()
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
        let url = Url::parse(root).map_err(|e| {
            Error::from(StorageError::Location {
                location: redact::redact_root(root),
                message: format!("invalid storage URL: {e}"),
            })
        })?;
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| {
                Error::from(StorageError::Location {
                    location: root.to_string(),
                    message: "invalid file URL".into(),
                })
            })?;
            return local_url(&path);
        }
        return Ok(url);
    }
    local_url(Path::new(root))
}

/// Checks what object_store would only report deep inside a job: a bucket or
/// container in the URL, and an Azure account for `az://container/...` and
/// `abfss://container/...`.
fn validate_remote(url: &Url, options: &HashMap<String, String>) -> Result<()> {
    let fail = |message: String| {
        Err(Error::from(StorageError::Location {
            location: redact::redact_url(url),
            message,
        }))
    };
    let option = |keys: &[&str], env: &str| {
        options
            .iter()
            .find(|(k, _)| keys.contains(&k.to_ascii_lowercase().as_str()))
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(env).ok())
            .filter(|v| !v.trim().is_empty())
    };
    match url.scheme() {
        "file" => Ok(()),
        "s3" | "s3a" => match url.host_str() {
            Some(h) if !h.is_empty() => Ok(()),
            _ => fail("the URL names no bucket (expected s3://bucket/prefix)".into()),
        },
        "az" | "abfs" | "abfss" | "adl" | "azure" => {
            if url.host_str().is_none_or(str::is_empty) {
                return fail("the URL names no container (expected az://container/prefix or abfss://container@account.dfs.core.windows.net/prefix)".into());
            }
            let account_in_url = !url.username().is_empty();
            let account = option(
                &["azure_storage_account_name", "account_name"],
                "AZURE_STORAGE_ACCOUNT_NAME",
            );
            let emulator = option(
                &[
                    "azure_storage_use_emulator",
                    "object_store_use_emulator",
                    "use_emulator",
                ],
                "AZURE_STORAGE_USE_EMULATOR",
            )
            .is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            });
            if account_in_url || account.is_some() || emulator {
                Ok(())
            } else {
                fail("no Azure storage account: use abfss://container@ACCOUNT.dfs.core.windows.net/prefix, or set [storage.options] azure_storage_account_name (or AZURE_STORAGE_ACCOUNT_NAME)".into())
            }
        }
        other => fail(format!(
            "unsupported storage scheme {other}:// (use a path, file://, s3://, az:// or abfss://)"
        )),
    }
}

fn local_url(path: &Path) -> Result<Url> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    let absolute = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    Url::from_directory_path(&absolute).map_err(|()| {
        Error::from(StorageError::Location {
            location: absolute.display().to_string(),
            message: "cannot turn the path into a URL".into(),
        })
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

    #[test]
    fn display_and_debug_hide_secrets() {
        let config = StorageConfig {
            root: "s3://lake/prefix".into(),
            options: [
                ("aws_access_key_id", "AKIDVISIBLE"),
                ("aws_secret_access_key", "Sup3rS3cretValue"),
                ("aws_endpoint_url", "http://127.0.0.1:9000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let root = StorageRoot::from_config(&config).unwrap();
        for shown in [
            root.to_string(),
            root.describe(),
            format!("{root:?}"),
            format!("{config:?}"),
        ] {
            assert!(!shown.contains("Sup3rS3cretValue"), "{shown}");
            assert!(shown.contains("AKIDVISIBLE"), "{shown}");
        }
        assert!(root.to_string().contains("aws_secret_access_key=***"));
        assert!(
            root.to_string()
                .contains("aws_endpoint_url=http://127.0.0.1:9000")
        );
        // Registered: errors quoting the value are masked too.
        let error = Error::from(StorageError::Location {
            location: root.redacted_url(),
            message: "server said: bad key Sup3rS3cretValue".into(),
        });
        assert!(!error.to_string().contains("Sup3rS3cretValue"), "{error}");
    }

    #[test]
    fn url_passwords_are_never_shown() {
        let config = StorageConfig {
            root: "s3://user:PassW0rdInUrl@lake/prefix".into(),
            options: Default::default(),
        };
        let root = StorageRoot::from_config(&config).unwrap();
        let location = root.table_url("bronze", "t").unwrap();
        let error = Error::from(StorageError::Location {
            location: location.to_string(),
            message: "failed".into(),
        });
        for shown in [root.to_string(), format!("{config:?}"), error.to_string()] {
            assert!(!shown.contains("PassW0rdInUrl"), "{shown}");
        }
    }

    #[test]
    fn azure_fsspec_form_needs_an_account() {
        let config = |options: &[(&str, &str)]| StorageConfig {
            root: "abfss://container/prefix".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none()
            && std::env::var_os("AZURE_STORAGE_USE_EMULATOR").is_none()
        {
            let error = StorageRoot::from_config(&config(&[])).unwrap_err();
            assert!(
                error.to_string().contains("no Azure storage account"),
                "{error}"
            );
        }
        StorageRoot::from_config(&config(&[("azure_storage_account_name", "acme")])).unwrap();
        StorageRoot::from_config(&StorageConfig {
            root: "abfss://container@acme.dfs.core.windows.net/prefix".into(),
            options: Default::default(),
        })
        .unwrap();
    }
}
