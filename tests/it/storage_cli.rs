//! The `lakehouse` binary on object storage configured only through the
//! standard environment variables (no `[storage.options]`): ingest, then
//! query, with debug logs that must not show the secret.

use crate::storage_support::{Kind, Server};

async fn lakehouse(
    envs: &[(String, String)],
    args: &[&str],
    dir: &std::path::Path,
) -> (String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("LAKEHOUSE_LOG", "debug")
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "lakehouse {args:?} failed:\n{stdout}\n{}",
        tail(&stderr)
    );
    (stdout, stderr)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Settings for `server` only through the standard environment variables
/// (plus the shipped specs), with an empty config file in `dir`.
fn server_env(server: &Server, dir: &std::path::Path) -> Vec<(String, String)> {
    let mut envs: Vec<(String, String)> = match server.kind {
        Kind::S3 => vec![
            (
                "LAKEHOUSE_STORAGE__ROOT".into(),
                server.fresh_root("cli-env"),
            ),
            (
                "AWS_ENDPOINT_URL".into(),
                server.options["aws_endpoint_url"].clone(),
            ),
            (
                "AWS_ACCESS_KEY_ID".into(),
                server.options["aws_access_key_id"].clone(),
            ),
            ("AWS_SECRET_ACCESS_KEY".into(), server.secret.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ],
        Kind::Azure => vec![
            // The fsspec form: the account comes from the environment.
            (
                "LAKEHOUSE_STORAGE__ROOT".into(),
                server
                    .fresh_root("cli-env")
                    .replacen("az://", "abfss://", 1),
            ),
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            (
                "AZURE_STORAGE_ACCOUNT_NAME".into(),
                "devstoreaccount1".into(),
            ),
            ("AZURE_STORAGE_ACCOUNT_KEY".into(), server.secret.clone()),
        ],
    };
    envs.push((
        "LAKEHOUSE_CONFIG".into(),
        dir.join("none.toml").display().to_string(),
    ));
    std::fs::write(dir.join("none.toml"), "").unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    for (key, folder) in [
        ("SILVER__LAYERS_DIR", "layers/silver"),
        ("SILVER__SQL_DIR", "sql/silver"),
        ("GOLD__LAYERS_DIR", "layers/gold"),
        ("GOLD__SQL_DIR", "sql/gold"),
    ] {
        envs.push((format!("LAKEHOUSE_{key}"), format!("\"{repo}/{folder}\"")));
    }
    envs.push(("RUST_BACKTRACE".into(), "0".into()));
    envs
}

/// `bronze_events` rows, through `lakehouse query`.
async fn bronze_rows(envs: &[(String, String)], dir: &std::path::Path) -> (i64, String) {
    let (out, err) = lakehouse(
        envs,
        &[
            "query",
            "SELECT count(*) AS n FROM bronze_events",
            "--format",
            "csv",
        ],
        dir,
    )
    .await;
    let n = out
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"));
    (n, err)
}

async fn env_only_settings_work(server: Server) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mock.jsonl");
    crate::storage_flow::mock_jsonl(&input);
    let envs = server_env(&server, dir.path());
    let (out, err1) = lakehouse(
        &envs,
        &["run", "bronze", "--from-file", input.to_str().unwrap()],
        dir.path(),
    )
    .await;
    let rows: i64 = out
        .split_once(" records (")
        .and_then(|(_, rest)| rest.split_once(" rows"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {out}"));
    assert!(rows > 0, "{out}");
    let (out, err2) = lakehouse(
        &envs,
        &[
            "query",
            "SELECT count(*) AS n FROM bronze_events",
            "--format",
            "csv",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(out.lines().nth(1), Some(rows.to_string().as_str()), "{out}");
    assert!(
        err1.contains("storage reachable and writable"),
        "{}",
        tail(&err1)
    );
    for text in [&err1, &err2] {
        assert!(!text.contains(&server.secret), "secret in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cli_with_standard_env_vars() {
    let Some(server) = Server::s3() else { return };
    env_only_settings_work(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_cli_with_standard_env_vars() {
    let Some(server) = Server::azure() else {
        return;
    };
    env_only_settings_work(server).await;
}

/// Three `lakehouse run bronze` processes at once on the same input (a
/// scheduler started three times): all succeed, and the table holds each
/// record once, as after a single run.
async fn racing_processes_land_each_record_once(server: Server) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mock.jsonl");
    crate::storage_flow::mock_jsonl(&input);
    let mut envs = server_env(&server, dir.path());
    envs.push(("LAKEHOUSE_BRONZE__FLUSH_ROWS".into(), "100".into()));
    let args = ["run", "bronze", "--from-file", input.to_str().unwrap()];
    let runs = futures::future::join_all((0..3).map(|_| lakehouse(&envs, &args, dir.path()))).await;
    assert_eq!(runs.len(), 3);
    let (stored, _) = bronze_rows(&envs, dir.path()).await;
    // The same input once, under another prefix.
    let single = server_env(&server, dir.path());
    lakehouse(&single, &args, dir.path()).await;
    let (expected, _) = bronze_rows(&single, dir.path()).await;
    eprintln!(
        "{:?}: 3 racing processes stored {stored} rows, one run {expected}",
        server.kind
    );
    assert!(expected > 0);
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_racing_bronze_processes_land_each_record_once() {
    let Some(server) = Server::s3() else { return };
    racing_processes_land_each_record_once(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_racing_bronze_processes_land_each_record_once() {
    let Some(server) = Server::azure() else {
        return;
    };
    racing_processes_land_each_record_once(server).await;
}
