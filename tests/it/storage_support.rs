//! Object-store test servers (SeaweedFS for S3, Azurite for Azure Blob),
//! started by scripts/test.sh (scripts/storage-services.sh). A test is skipped
//! when its server is not configured, unless `LAKEHOUSE_TEST_REQUIRE_SERVICES`
//! is set, in which case it fails (same rule as Kafka and Postgres).

use std::collections::BTreeMap;

use lakehouse::config::StorageConfig;

/// Which kind of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3,
    Azure,
}

/// One object-store server, with the options that reach it.
#[derive(Debug, Clone)]
pub struct Server {
    pub kind: Kind,
    /// Bucket or container created by the test script.
    pub bucket: String,
    /// `[storage.options]` for it.
    pub options: BTreeMap<String, String>,
    /// The secret in `options` (tests assert it is never shown).
    pub secret: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn skip(what: &str, var_name: &str) -> Option<Server> {
    assert!(
        std::env::var_os("LAKEHOUSE_TEST_REQUIRE_SERVICES").is_none(),
        "{var_name} is not set but services are required"
    );
    eprintln!("skipping: {what} not configured ({var_name}; run scripts/test.sh)");
    None
}

impl Server {
    /// SeaweedFS from `LAKEHOUSE_TEST_S3_*`.
    pub fn s3() -> Option<Self> {
        crate::support::init_tracing();
        let Some(endpoint) = var("LAKEHOUSE_TEST_S3_ENDPOINT") else {
            return skip("S3 server", "LAKEHOUSE_TEST_S3_ENDPOINT");
        };
        let bucket = var("LAKEHOUSE_TEST_S3_BUCKET").unwrap_or_else(|| "lake".into());
        let key = var("LAKEHOUSE_TEST_S3_ACCESS_KEY_ID").expect("LAKEHOUSE_TEST_S3_ACCESS_KEY_ID");
        let secret = var("LAKEHOUSE_TEST_S3_SECRET_ACCESS_KEY")
            .expect("LAKEHOUSE_TEST_S3_SECRET_ACCESS_KEY");
        let options = BTreeMap::from([
            ("aws_endpoint_url".to_string(), endpoint.clone()),
            ("aws_access_key_id".to_string(), key),
            ("aws_secret_access_key".to_string(), secret.clone()),
            ("aws_region".to_string(), "us-east-1".to_string()),
            ("aws_allow_http".to_string(), "true".to_string()),
        ]);
        Some(Self {
            kind: Kind::S3,
            bucket,
            options,
            secret,
        })
    }

    /// Azurite from `LAKEHOUSE_TEST_AZURE_*`, in emulator mode (object_store
    /// reads the endpoint from `AZURITE_BLOB_STORAGE_URL`, which the test
    /// script exports too).
    pub fn azure() -> Option<Self> {
        crate::support::init_tracing();
        let Some(endpoint) = var("LAKEHOUSE_TEST_AZURE_URL") else {
            return skip("Azure server", "LAKEHOUSE_TEST_AZURE_URL");
        };
        assert_eq!(
            var("AZURITE_BLOB_STORAGE_URL").as_deref(),
            Some(endpoint.as_str()),
            "AZURITE_BLOB_STORAGE_URL must point at the Azurite of LAKEHOUSE_TEST_AZURE_URL"
        );
        let bucket = var("LAKEHOUSE_TEST_AZURE_CONTAINER").unwrap_or_else(|| "lake".into());
        // Azurite's well-known development account key (public, documented).
        let secret = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==".to_string();
        let options = BTreeMap::from([
            ("azure_storage_use_emulator".to_string(), "true".to_string()),
            (
                "azure_storage_account_name".to_string(),
                "devstoreaccount1".to_string(),
            ),
            ("azure_storage_account_key".to_string(), secret.clone()),
        ]);
        Some(Self {
            kind: Kind::Azure,
            bucket,
            options,
            secret,
        })
    }

    /// A root URL under a fresh prefix, in the server's main URL form.
    pub fn fresh_root(&self, test: &str) -> String {
        let prefix = crate::support::unique(&format!("{test}-"));
        match self.kind {
            Kind::S3 => format!("s3://{}/{prefix}", self.bucket),
            Kind::Azure => format!("az://{}/{prefix}", self.bucket),
        }
    }

    /// `[storage]` for a fresh prefix.
    pub fn storage(&self, test: &str) -> StorageConfig {
        StorageConfig {
            root: self.fresh_root(test),
            options: self.options.clone(),
        }
    }
}
