//! Every storage URL form resolves, passes the startup check, and reaches the
//! same objects as the canonical form.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use lakehouse::config::StorageConfig;
use lakehouse::storage::StorageRoot;

use crate::storage_support::{Kind, Server};

/// Writes table `table` (one row holding `value`) under `root` in one form.
async fn write_one(root: &StorageRoot, table: &str, value: i64) {
    root.check().await.unwrap_or_else(|e| panic!("{root}: {e}"));
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![value]))]).unwrap();
    root.open_table("forms", table)
        .await
        .unwrap()
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap_or_else(|e| panic!("{root}: {e}"));
}

/// Reads table `table` back through `root` (another form of the same place).
async fn read_one(root: &StorageRoot, table: &str) -> i64 {
    let ctx = SessionContext::new();
    assert!(
        lakehouse::delta::session::register_table(&ctx, root, "forms", table)
            .await
            .unwrap(),
        "{table} not found through {root}"
    );
    let batches = lakehouse::delta::session::collect(&ctx, &format!("SELECT sum(v) FROM {table}"))
        .await
        .unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

async fn forms_reach_the_same_place(server: Server, forms: &[String]) {
    let canonical = server.fresh_root("forms");
    let prefix = canonical.rsplit('/').next().unwrap().to_string();
    let reader = StorageRoot::from_config(&StorageConfig {
        root: canonical.clone(),
        options: server.options.clone(),
    })
    .unwrap();
    for (i, form) in forms.iter().enumerate() {
        let root = StorageRoot::from_config(&StorageConfig {
            root: form.replace("{prefix}", &prefix),
            options: server.options.clone(),
        })
        .unwrap();
        let table = format!("t{i}");
        write_one(&root, &table, 100 + i as i64).await;
        assert_eq!(read_one(&reader, &table).await, 100 + i as i64, "{form}");
        assert_eq!(read_one(&root, &table).await, 100 + i as i64, "{form}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_url_forms() {
    let Some(server) = Server::s3() else { return };
    assert_eq!(server.kind, Kind::S3);
    let b = server.bucket.clone();
    let forms = [
        format!("s3://{b}/{{prefix}}"),
        format!("s3a://{b}/{{prefix}}/"),
    ];
    forms_reach_the_same_place(server, &forms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_url_forms() {
    let Some(server) = Server::azure() else {
        return;
    };
    let c = server.bucket.clone();
    let forms = [
        format!("az://{c}/{{prefix}}"),
        // The Hadoop form names the account in the host ...
        format!("abfss://{c}@devstoreaccount1.dfs.core.windows.net/{{prefix}}"),
        format!("abfs://{c}@devstoreaccount1.dfs.core.windows.net/{{prefix}}"),
        // ... the fsspec form takes it from azure_storage_account_name.
        format!("abfss://{c}/{{prefix}}"),
        format!("azure://{c}/{{prefix}}"),
    ];
    forms_reach_the_same_place(server, &forms).await;
}

#[tokio::test]
async fn local_forms_and_invalid_roots() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("lake");
    let as_path = StorageRoot::from_config(&StorageConfig {
        root: plain.display().to_string(),
        options: Default::default(),
    })
    .unwrap();
    let as_url = StorageRoot::from_config(&StorageConfig {
        root: format!("file://{}", plain.display()),
        options: Default::default(),
    })
    .unwrap();
    assert_eq!(as_path.url(), as_url.url());
    as_url.check().await.unwrap();
    write_one(&as_path, "t", 7).await;
    assert_eq!(read_one(&as_url, "t").await, 7);

    let bad = |root: &str| {
        StorageRoot::from_config(&StorageConfig {
            root: root.into(),
            options: Default::default(),
        })
        .unwrap_err()
        .to_string()
    };
    let message = bad("gs://bucket/x");
    assert!(
        message.contains("unsupported storage scheme gs://"),
        "{message}"
    );
    let message = bad("s3:///x");
    assert!(message.contains("no bucket"), "{message}");
    if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none()
        && std::env::var_os("AZURE_STORAGE_USE_EMULATOR").is_none()
    {
        let message = bad("abfss://container/prefix");
        assert!(message.contains("azure_storage_account_name"), "{message}");
    }
}
