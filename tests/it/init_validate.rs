//! `lakehouse init` and `lakehouse validate`, run as the real binary: the
//! scaffold validates and runs end to end on its sample data, the shipped
//! pipeline validates, and broken projects fail naming the file and line.

use std::path::{Path, PathBuf};
use std::process::Output;

fn lakehouse(cwd: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(args)
        .current_dir(cwd)
        // Nothing from the developer's shell leaks in.
        .env_remove("LAKEHOUSE_CONFIG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run lakehouse")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A fresh `lakehouse init` project in a temp dir: (the temp dir, the project).
fn project() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = lakehouse(tmp.path(), &["init", "proj"]);
    ok(&out, "init");
    let dir = tmp.path().join("proj");
    (tmp, dir)
}

/// `validate` of the project in `dir`; its stderr, asserting it failed.
fn validate_fails(dir: &Path) -> String {
    let config = dir.join("lakehouse.toml");
    let out = lakehouse(dir, &["--config", config.to_str().unwrap(), "validate"]);
    assert!(
        !out.status.success(),
        "validate should fail:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn edit(file: &Path, from: &str, to: &str) {
    let old = std::fs::read_to_string(file).expect("read");
    assert!(old.contains(from), "{} has no `{from}`", file.display());
    std::fs::write(file, old.replacen(from, to, 1)).expect("write");
}

#[test]
fn init_scaffold_validates_and_runs_on_its_sample() {
    let (tmp, dir) = project();
    for file in [
        "lakehouse.toml",
        "layers/silver/orders.toml",
        "sql/silver/orders.sql",
        "layers/gold/daily_revenue.toml",
        "sql/gold/daily_revenue.sql",
        "data/sample.jsonl",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "init did not write {file}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("lakehouse run bronze --from-file data/sample.jsonl"));

    // A second init into the now non-empty folder is refused.
    let again = lakehouse(tmp.path(), &["init", "proj"]);
    assert!(!again.status.success(), "init over a non-empty folder");
    assert!(text(&again.stderr).contains("not empty"));

    // Run from outside the project, with --config, as CI would.
    let config = dir.join("lakehouse.toml");
    let config = config.to_str().unwrap();
    let sample = dir.join("data/sample.jsonl");
    let graph = ok(
        &lakehouse(tmp.path(), &["--config", config, "validate"]),
        "validate",
    );
    let silver_at = graph.find("1. orders (scd1)").expect(&graph);
    let topic_at = graph.find("<- topic app.public.orders").expect(&graph);
    let mart_at = graph.find("1. daily_revenue").expect(&graph);
    let reads_at = graph[mart_at..].find("<- orders").map(|i| i + mart_at);
    assert!(silver_at < topic_at && topic_at < mart_at, "{graph}");
    assert!(reads_at.is_some(), "{graph}");

    let run = |args: &[&str], what: &str| {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        ok(&lakehouse(tmp.path(), &all), what)
    };
    run(
        &["run", "bronze", "--from-file", sample.to_str().unwrap()],
        "bronze",
    );
    run(&["run", "silver"], "silver");
    run(&["run", "gold", "--no-publish"], "gold");
    let mart = run(
        &[
            "query",
            "--format",
            "csv",
            "SELECT order_date, orders, revenue FROM daily_revenue ORDER BY order_date",
        ],
        "query mart",
    );
    // Orders 1 (deleted) and 3 (cancelled) are out: order 2 paid 5.00 on
    // 2024-05-01, order 4 10.00 on 2024-05-02.
    assert_eq!(
        mart,
        "order_date,orders,revenue\n2024-05-01,1,5.00\n2024-05-02,1,10.00\n"
    );
    let rows = run(
        &[
            "query",
            "--format",
            "csv",
            "SELECT order_id, status FROM orders WHERE order_id IS NOT NULL ORDER BY order_id",
        ],
        "query silver",
    );
    assert_eq!(rows, "order_id,status\n2,paid\n3,cancelled\n4,new\n");
}

#[test]
fn validate_passes_on_the_shipped_pipeline_and_prints_every_table() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("lakehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[silver]\nlayers_dir = \"{r}/layers/silver\"\nsql_dir = \"{r}/sql/silver\"\n\
             [gold]\nlayers_dir = \"{r}/layers/gold\"\nsql_dir = \"{r}/sql/gold\"\n",
            r = repo.display()
        ),
    )
    .unwrap();
    let graph = ok(
        &lakehouse(
            tmp.path(),
            &["--config", config.to_str().unwrap(), "validate"],
        ),
        "validate shipped",
    );
    let mut listed = 0;
    for (folder, line) in [("layers/silver", " ("), ("layers/gold", "\n")] {
        for entry in std::fs::read_dir(repo.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let numbered = format!(". {name}{line}");
            assert!(graph.contains(&numbered), "{name} not listed:\n{graph}");
            listed += 1;
        }
    }
    assert!(listed >= 19, "{graph}");
    // Run order: a fact after the dimensions it looks up.
    let at = |s: &str| graph.find(s).expect(s);
    assert!(at(". dim_customer (") < at(". fact_sales ("), "{graph}");
    assert!(at(". orders (") < at(". fact_sales ("), "{graph}");
    // The mart over the system tables runs last.
    assert!(at(". daily_sales\n") < at(". pipeline_health\n"), "{graph}");
    assert!(
        graph.contains("ok: 10 silver tables and 9 gold marts plan"),
        "{graph}"
    );
}

#[test]
fn a_mart_over_another_mart_runs_after_it_and_a_cycle_is_refused() {
    let (tmp, dir) = project();
    // `a_totals` sorts before `daily_revenue`, the mart it reads.
    std::fs::write(
        dir.join("layers/gold/a_totals.toml"),
        "description = \"Revenue over all days.\"\nkeys = [\"period\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sql/gold/a_totals.sql"),
        "SELECT 'all' AS period, CAST(count(*) AS BIGINT) AS days,\n\
         CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue FROM daily_revenue\n",
    )
    .unwrap();
    let config = dir.join("lakehouse.toml");
    let config = config.to_str().unwrap();
    let run = |args: &[&str], what: &str| {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        ok(&lakehouse(tmp.path(), &all), what)
    };
    let graph = run(&["validate"], "validate");
    assert!(graph.contains("1. daily_revenue\n"), "{graph}");
    assert!(
        graph.contains("2. a_totals\n       <- daily_revenue"),
        "{graph}"
    );

    // On the first run, the mart it reads does not exist before this run.
    let sample = dir.join("data/sample.jsonl");
    run(
        &["run", "bronze", "--from-file", sample.to_str().unwrap()],
        "bronze",
    );
    run(&["run", "silver"], "silver");
    let gold = run(&["run", "gold", "--no-publish"], "gold");
    let at = |s: &str| gold.find(s).unwrap_or_else(|| panic!("{s}:\n{gold}"));
    assert!(at("gold daily_revenue:") < at("gold a_totals:"), "{gold}");
    let totals = run(
        &[
            "query",
            "--format",
            "csv",
            "SELECT period, days, revenue FROM a_totals",
        ],
        "query",
    );
    assert_eq!(totals, "period,days,revenue\nall,2,15.00\n");

    // Marts reading each other: refused by validate and by the run, naming the cycle.
    edit(
        &dir.join("sql/gold/daily_revenue.sql"),
        "WHERE status",
        "WHERE order_date NOT IN (SELECT CAST(NULL AS DATE) FROM a_totals) AND status",
    );
    let err = validate_fails(&dir);
    assert!(
        err.contains(
            "a_totals.sql: marts read each other in a cycle: a_totals -> daily_revenue -> a_totals"
        ),
        "{err}"
    );
    let out = lakehouse(
        tmp.path(),
        &["--config", config, "run", "gold", "--no-publish"],
    );
    assert!(!out.status.success(), "gold ran a cycle");
    assert!(text(&out.stderr).contains("in a cycle: a_totals -> daily_revenue -> a_totals"));
}

#[test]
fn a_toml_typo_names_the_spec_file_and_line() {
    let (_tmp, dir) = project();
    edit(
        &dir.join("layers/silver/orders.toml"),
        "keys = [\"order_id\"]",
        "kyes = [\"order_id\"]",
    );
    let err = validate_fails(&dir);
    assert!(err.contains("layers/silver/orders.toml: line 4:"), "{err}");
    assert!(err.contains("kyes"), "{err}");
}

#[test]
fn an_unknown_column_names_the_sql_file_and_line() {
    let (_tmp, dir) = project();
    edit(
        &dir.join("sql/silver/orders.sql"),
        "  customer,",
        "  customr,",
    );
    let err = validate_fails(&dir);
    assert!(err.contains("sql/silver/orders.sql"), "{err}");
    assert!(err.contains("customr"), "{err}");
    assert!(err.contains("at line 4"), "{err}");
}

#[test]
fn a_lookup_to_a_missing_table_names_the_spec_and_line() {
    let (_tmp, dir) = project();
    std::fs::write(
        dir.join("layers/silver/fact_orders.toml"),
        "kind = \"fact\"\nkeys = [\"order_id\"]\n[source]\nname = \"o\"\ntopic = \"app.public.orders\"\n\
         columns = { id = \"BIGINT\" }\n[[lookups]]\ntable = \"dim_missing\"\non = { order_id = \"id\" }\nkey = \"m_key\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sql/silver/fact_orders.sql"),
        "SELECT id AS order_id FROM o\n",
    )
    .unwrap();
    let err = validate_fails(&dir);
    assert!(
        err.contains("layers/silver/fact_orders.toml: line 8: lookups[0].table"),
        "{err}"
    );
    assert!(err.contains("dim_missing"), "{err}");
}

#[test]
fn an_incremental_rule_on_an_unread_table_names_the_mart_spec() {
    let (_tmp, dir) = project();
    let spec = dir.join("layers/gold/daily_revenue.toml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("orders_quarantine = \"quarantined_at\"\n");
    std::fs::write(&spec, text).unwrap();
    let err = validate_fails(&dir);
    assert!(
        err.contains("layers/gold/daily_revenue.toml: line 9: incremental.orders_quarantine"),
        "{err}"
    );
    assert!(err.contains("does not read"), "{err}");
}

#[test]
fn validate_reports_every_error_not_only_the_first() {
    let (_tmp, dir) = project();
    edit(
        &dir.join("layers/gold/daily_revenue.toml"),
        "orders = \"order_date\"",
        "orders = \"no_such_column\"",
    );
    edit(
        &dir.join("sql/silver/orders.sql"),
        "  status,",
        "  status, nope,",
    );
    let err = validate_fails(&dir);
    // The silver SQL error, and the mart (which reads the broken table) is
    // skipped rather than reported again.
    assert!(err.contains("sql/silver/orders.sql"), "{err}");
    assert!(err.contains("validate found 1 error(s)"), "{err}");
    // With the SQL fixed, the bad incremental column is found.
    edit(
        &dir.join("sql/silver/orders.sql"),
        "  status, nope,",
        "  status,",
    );
    std::fs::write(dir.join("layers/gold/other.toml"), "keys = [\"x\"]\n").unwrap();
    std::fs::write(
        dir.join("sql/gold/other.sql"),
        "SELECT missing_col AS x FROM orders\n",
    )
    .unwrap();
    let err = validate_fails(&dir);
    assert!(
        err.contains("daily_revenue.toml: line 8: incremental.orders: `orders` has no column `no_such_column`"),
        "{err}"
    );
    assert!(err.contains("sql/gold/other.sql"), "{err}");
    assert!(err.contains("validate found 2 error(s)"), "{err}");
}
