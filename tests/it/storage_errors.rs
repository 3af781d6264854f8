//! The startup check against real servers: a wrong endpoint, bad credentials
//! and a missing bucket / container fail fast with a classified message, and
//! no secret appears in errors, displays or the CLI's output.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lakehouse::Error;
use lakehouse::config::StorageConfig;
use lakehouse::error::StorageError;
use lakehouse::storage::{StorageProblem, StorageRoot};

use crate::storage_support::{Kind, Server};

/// The check's error for `root` with `options`; asserts it came fast and
/// shows none of `secrets`.
async fn check_fails(
    root: &str,
    options: BTreeMap<String, String>,
    secrets: &[&str],
) -> (StorageProblem, String) {
    let storage = StorageConfig {
        root: root.into(),
        options,
    };
    let shown = format!("{storage:?}");
    let root = StorageRoot::from_config(&storage).unwrap();
    let described = format!("{root} {root:?}");
    let started = Instant::now();
    let error = match root.check().await {
        Ok(()) => panic!("the check passed for {root}"),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the check took {:?}",
        started.elapsed()
    );
    let message = error.to_string();
    for secret in secrets {
        for text in [&message, &shown, &described] {
            assert!(!text.contains(secret), "secret shown: {text}");
        }
    }
    let Error::Storage(StorageError::Check { problem, .. }) = error else {
        panic!("not a storage check error: {message}");
    };
    (problem, message)
}

fn with(server: &Server, key: &str, value: &str) -> BTreeMap<String, String> {
    let mut options = server.options.clone();
    options.insert(key.into(), value.into());
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bad_credentials_missing_bucket_wrong_endpoint() {
    let Some(server) = Server::s3() else { return };
    let root = server.fresh_root("errors");
    let wrong_secret = "wrong-secret-value-0123456789";
    let (problem, message) = check_fails(
        &root,
        with(&server, "aws_secret_access_key", wrong_secret),
        &[wrong_secret, &server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::AccessDenied, "{message}");
    assert!(message.contains("bad credentials"), "{message}");
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");

    let (problem, message) = check_fails(
        &root,
        with(&server, "aws_access_key_id", "NOSUCHKEY"),
        &[&server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::AccessDenied, "{message}");

    let (problem, message) = check_fails(
        "s3://no-such-bucket-lakehouse/x",
        server.options.clone(),
        &[&server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::MissingBucket, "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        message.contains("s3://no-such-bucket-lakehouse/x"),
        "{message}"
    );

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (problem, message) = check_fails(
        &root,
        with(
            &server,
            "aws_endpoint_url",
            &format!("http://127.0.0.1:{closed}"),
        ),
        &[&server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::Unreachable, "{message}");
    assert!(message.contains("unreachable"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_bad_key_and_missing_container() {
    let Some(server) = Server::azure() else {
        return;
    };
    assert_eq!(server.kind, Kind::Azure);
    let root = server.fresh_root("errors");
    // A well-formed key that is not the account's.
    let wrong_key = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3JvbmdrZXk=";
    let (problem, message) = check_fails(
        &root,
        with(&server, "azure_storage_account_key", wrong_key),
        &[wrong_key, &server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::AccessDenied, "{message}");

    // A SAS token with a bad signature: neither it nor its signature shows.
    let mut options = server.options.clone();
    options.remove("azure_storage_account_key");
    let sas = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&sig=QmFkU2lnbmF0dXJlU2VjcmV0MTIzNDU2Nzg5MA%3D%3D";
    options.insert("azure_storage_sas_key".into(), sas.into());
    let (problem, message) = check_fails(
        &root,
        options,
        &[sas, "QmFkU2lnbmF0dXJlU2VjcmV0", &server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::AccessDenied, "{message}");

    let (problem, message) = check_fails(
        "az://no-such-container/x",
        server.options.clone(),
        &[&server.secret],
    )
    .await;
    assert_eq!(problem, StorageProblem::MissingBucket, "{message}");
}

/// `lakehouse run silver` against bad credentials: exits non-zero before any
/// job, says why, and neither stdout nor stderr (logs included) show the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_fails_fast_without_showing_secrets() {
    let Some(server) = Server::s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong_secret = "cli-wrong-secret-abcdef0123456789";
    let mut options = with(&server, "aws_secret_access_key", wrong_secret);
    options.remove("aws_access_key_id");
    let mut toml = format!(
        "[storage]\nroot = \"{}\"\n[storage.options]\n",
        server.fresh_root("cli")
    );
    for (k, v) in &options {
        toml.push_str(&format!("{k} = \"{v}\"\n"));
    }
    let config = dir.path().join("lakehouse.toml");
    std::fs::write(&config, toml).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["--config", config.to_str().unwrap(), "run", "silver"])
        .env("AWS_ACCESS_KEY_ID", "cli-key-id")
        .env("LAKEHOUSE_LOG", "debug")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("storage check failed"), "{stderr}");
    assert!(stderr.contains("bad credentials"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(wrong_secret), "secret shown: {text}");
        assert!(!text.contains(&server.secret), "secret shown: {text}");
    }
}
