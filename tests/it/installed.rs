//! The installed binary, run as a user would: from folders that are not the
//! repository, with a config file elsewhere, over a lake with only bronze.

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::silver_support::Dbz;

fn lakehouse(cwd: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(args)
        .current_dir(cwd)
        // Nothing from the developer's shell or the repository leaks in.
        .env_remove("LAKEHOUSE_CONFIG")
        .envs(envs.iter().copied())
        .output()
        .expect("run lakehouse")
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn failed(output: &Output, what: &str) -> String {
    assert!(!output.status.success(), "{what} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A few Debezium records of one table, as `--from-file` JSON lines.
fn write_records(file: &Path) {
    let d = Dbz::new();
    let lines: Vec<String> = (1..=5)
        .map(|id| {
            d.change(
                "customers",
                "c",
                json!({ "id": id }),
                json!({ "id": id, "email": format!("{id}@x") }),
                100 + id,
            )
        })
        .collect();
    std::fs::write(file, lines.join("\n") + "\n").expect("write records");
}

/// `lakehouse query` from `cwd` over the root `root` counts `n` bronze rows.
fn assert_bronze_rows(cwd: &Path, root: (&str, &str), n: usize, what: &str) {
    let sql = "SELECT count(*) AS n FROM bronze_events";
    let out = ok(
        &lakehouse(cwd, &[root], &["query", "--format", "csv", sql]),
        what,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["n".to_string(), n.to_string()],
        "{out}"
    );
}

#[test]
fn demo_runs_from_any_folder_and_never_clears_a_foreign_one() {
    let cwd = tempfile::tempdir().unwrap();
    let args = [
        "demo",
        "--changes",
        "1500",
        "--partitions",
        "2",
        "--dir",
        "lake",
    ];
    let out = ok(
        &lakehouse(cwd.path(), &[], &args),
        "demo in an empty folder",
    );
    assert!(out.contains("fact_sales"), "{out}");
    let pipeline = cwd.path().join("lake/pipeline");
    assert!(pipeline.join("layers/silver/dim_customer.toml").is_file());
    assert!(pipeline.join("sql/gold/daily_sales.sql").is_file());
    // Its config file queries the demo's lake from anywhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = cwd.path().join("lake/lakehouse.toml");
    let out = ok(
        &lakehouse(
            elsewhere.path(),
            &[],
            &[
                "--config",
                config.to_str().unwrap(),
                "query",
                "--format",
                "csv",
                "SELECT count(*) > 0 AS has_rows FROM daily_sales",
            ],
        ),
        "query with the demo's config",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["has_rows", "true"],
        "{out}"
    );
    // A second run clears the folder the first made.
    ok(
        &lakehouse(cwd.path(), &[], &args),
        "demo over its own folder",
    );

    // A folder the demo did not make is refused and left as it was.
    let foreign = cwd.path().join("precious");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("data.csv"), "keep me").unwrap();
    let err = failed(
        &lakehouse(
            cwd.path(),
            &[],
            &["demo", "--changes", "100", "--dir", "precious"],
        ),
        "demo over a foreign folder",
    );
    assert!(
        err.contains("precious") && err.contains("not made by the demo"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("data.csv")).unwrap(),
        "keep me"
    );
}

#[test]
fn query_and_status_over_a_root_with_only_bronze() {
    let cwd = tempfile::tempdir().unwrap();
    write_records(&cwd.path().join("records.jsonl"));
    let root = ("LAKEHOUSE_STORAGE__ROOT", "lake");
    ok(
        &lakehouse(
            cwd.path(),
            &[root],
            &["run", "bronze", "--from-file", "records.jsonl"],
        ),
        "run bronze",
    );
    // No layers/ folder here: no silver or gold specs, not an error.
    assert_bronze_rows(cwd.path(), root, 5, "query");
    let out = ok(&lakehouse(cwd.path(), &[root], &["status"]), "status");
    assert!(out.contains("bronze_events"), "{out}");
    // A configured folder that is missing stays an error, naming it.
    let err = failed(
        &lakehouse(
            cwd.path(),
            &[root, ("LAKEHOUSE_SILVER__LAYERS_DIR", "my-specs")],
            &["query", "SELECT 1"],
        ),
        "query with a missing configured specs folder",
    );
    assert!(err.contains("my-specs"), "{err}");
}

#[test]
fn config_paths_resolve_against_the_config_folder() {
    let project = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        project.path().join("lakehouse.toml"),
        format!(
            "[storage]\nroot = \"data\"\n[silver]\nlayers_dir = \"specs\"\nsql_dir = {:?}\n",
            repo.join("sql/silver").display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(project.path().join("specs")).unwrap();
    std::fs::copy(
        repo.join("layers/silver/dim_customer.toml"),
        project.path().join("specs/dim_customer.toml"),
    )
    .unwrap();
    write_records(&elsewhere.path().join("records.jsonl"));
    let config = project.path().join("lakehouse.toml");
    let config = config.to_str().unwrap();
    ok(
        &lakehouse(
            elsewhere.path(),
            &[],
            &[
                "--config",
                config,
                "run",
                "bronze",
                "--from-file",
                "records.jsonl",
            ],
        ),
        "run bronze",
    );
    assert!(project.path().join("data/bronze").is_dir());
    assert!(!elsewhere.path().join("data").exists());
    // The spec folder resolves too: silver runs dim_customer from `specs/`.
    let out = ok(
        &lakehouse(
            elsewhere.path(),
            &[],
            &["--config", config, "run", "silver"],
        ),
        "run silver",
    );
    assert!(out.contains("dim_customer"), "{out}");
    assert!(project.path().join("data/silver/dim_customer").is_dir());
}

/// A read-only bind mount of a folder (as root), unmounted when dropped.
struct ReadOnlyMount {
    path: std::path::PathBuf,
}

impl ReadOnlyMount {
    fn new(source: &Path, target: &Path) -> Option<Self> {
        std::fs::create_dir_all(target).expect("mount point");
        let run = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let (source, target_text) = (source.to_str()?, target.to_str()?);
        if !run(&["--bind", source, target_text]) {
            return None;
        }
        let mount = Self {
            path: target.to_path_buf(),
        };
        run(&["-o", "remount,ro,bind", target_text]).then_some(mount)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn query_and_status_work_on_a_read_only_root_and_writers_are_refused() {
    let cwd = tempfile::tempdir().unwrap();
    write_records(&cwd.path().join("records.jsonl"));
    ok(
        &lakehouse(
            cwd.path(),
            &[("LAKEHOUSE_STORAGE__ROOT", "lake")],
            &["run", "bronze", "--from-file", "records.jsonl"],
        ),
        "run bronze",
    );
    // Read-only even for root: what read-only credentials give.
    let Some(_mount) = ReadOnlyMount::new(&cwd.path().join("lake"), &cwd.path().join("ro")) else {
        assert!(
            std::env::var_os("LAKEHOUSE_TEST_REQUIRE_SERVICES").is_none(),
            "cannot bind-mount read-only (scripts/test.sh runs as root)"
        );
        eprintln!("skipping: no read-only bind mount (needs root)");
        return;
    };
    assert!(std::fs::write(cwd.path().join("ro/probe"), "x").is_err());
    let root = ("LAKEHOUSE_STORAGE__ROOT", "ro");
    assert_bronze_rows(cwd.path(), root, 5, "query on a read-only root");
    ok(
        &lakehouse(cwd.path(), &[root], &["status"]),
        "status on a read-only root",
    );
    let err = failed(
        &lakehouse(
            cwd.path(),
            &[root],
            &["run", "bronze", "--from-file", "records.jsonl"],
        ),
        "run bronze on a read-only root",
    );
    assert!(err.contains("Read-only file system"), "{err}");
}
