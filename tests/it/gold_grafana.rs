//! The Grafana provisioning: dashboard structure, and every panel's SQL
//! expanded the way Grafana's Postgres datasource does it ($__timeFilter,
//! $__timeFrom/$__timeTo, $__timeGroup[Alias], template variables) and run
//! against marts published by `lakehouse run gold`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use lakehouse::pipeline::jobs::GoldOptions;
use serde_json::Value;
use sqlx::{Column, Executor, Row, SqlSafeStr, Statement, TypeInfo};

use crate::gold_support::*;

const FROM: &str = "2000-01-01T00:00:00Z";
const TO: &str = "2100-01-01T00:00:00Z";

fn grafana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(grafana_dir().join("dashboards")).expect("dashboards dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read");
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 4, "{out:?}");
    out
}

fn datasource_uids() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(grafana_dir().join("provisioning/datasources/lakehouse.yaml"))
            .expect("datasource provisioning");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().to_string())
        .collect()
}

#[test]
fn dashboards_are_well_formed() {
    let uids = datasource_uids();
    assert!(uids.contains("lakehouse-gold"), "{uids:?}");
    let mut dashboard_uids = BTreeSet::new();
    for (file, dash) in dashboards() {
        assert!(
            dashboard_uids.insert(dash["uid"].as_str().expect("uid").to_string()),
            "{file}"
        );
        assert!(dash["title"].is_string(), "{file}");
        assert!(dash["time"]["from"].is_string(), "{file}");
        let mut ids = BTreeSet::new();
        let panels = dash["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file}");
        for panel in panels {
            let id = panel["id"].as_i64().expect("panel id");
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            for k in ["x", "y", "w", "h"] {
                assert!(
                    panel["gridPos"][k].is_i64(),
                    "{file} panel {id}: gridPos.{k}"
                );
            }
            let uid = panel["datasource"]["uid"]
                .as_str()
                .expect("panel datasource");
            assert!(uids.contains(uid), "{file} panel {id}: datasource {uid}");
            for target in panel["targets"].as_array().expect("targets") {
                assert!(uids.contains(target["datasource"]["uid"].as_str().expect("target ds")));
                assert!(
                    target["rawSql"].as_str().is_some_and(|s| !s.is_empty()),
                    "{file} panel {id}"
                );
            }
        }
        for var in dash["templating"]["list"].as_array().expect("templating") {
            assert!(
                uids.contains(var["datasource"]["uid"].as_str().expect("var ds")),
                "{file}"
            );
            let name = var["name"].as_str().expect("var name");
            let used = panels
                .iter()
                .any(|p| p["targets"].to_string().contains(&format!("${name}")));
            assert!(used, "{file}: variable {name} is not used by any panel");
        }
    }
}

/// Expands Grafana's Postgres macros and `variables` (multi-value, quoted).
fn expand(sql: &str, variables: &BTreeMap<String, Vec<String>>) -> String {
    let group = regex::Regex::new(r"\$__timeGroup(Alias)?\(\s*([^,]+?)\s*,\s*'(\d+)([smhd])'\s*\)")
        .expect("regex");
    let sql = group
        .replace_all(sql, |c: &regex::Captures| {
            let n: i64 = c[3].parse().expect("interval");
            let seconds = n * match &c[4] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => 86_400,
            };
            let expr = format!("floor(extract(epoch from {})/{seconds})*{seconds}", &c[2]);
            if c.get(1).is_some() {
                format!("{expr} AS \"time\"")
            } else {
                expr
            }
        })
        .into_owned();
    let filter = regex::Regex::new(r"\$__timeFilter\(\s*([^)]+?)\s*\)").expect("regex");
    let mut sql = filter
        .replace_all(&sql, |c: &regex::Captures| {
            format!("{} BETWEEN '{FROM}' AND '{TO}'", &c[1])
        })
        .into_owned();
    sql = sql
        .replace("$__timeFrom()", &format!("'{FROM}'"))
        .replace("$__timeTo()", &format!("'{TO}'"));
    for (name, values) in variables {
        let list = if values.is_empty() {
            "NULL".to_string()
        } else {
            values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",")
        };
        sql = sql
            .replace(&format!("${{{name}}}"), &list)
            .replace(&format!("${name}"), &list);
    }
    assert!(!sql.contains('$'), "unexpanded macro or variable in {sql}");
    sql
}

#[test]
fn macros_expand_like_grafana() {
    let vars = BTreeMap::from([(
        "carrier".to_string(),
        vec!["dhl".to_string(), "o'x".to_string()],
    )]);
    let sql = expand(
        "SELECT $__timeGroupAlias(d, '1d'), x FROM t WHERE $__timeFilter(d) AND c IN ($carrier) AND e > $__timeFrom()",
        &vars,
    );
    assert_eq!(
        sql,
        format!(
            "SELECT floor(extract(epoch from d)/86400)*86400 AS \"time\", x FROM t WHERE d BETWEEN '{FROM}' AND '{TO}' AND c IN ('dhl','o''x') AND e > '{FROM}'"
        )
    );
}

/// The single value of `sql`'s column `column`, as a double.
async fn scalar(conn: &mut sqlx::PgConnection, sql: &str, column: &str) -> Option<f64> {
    let wrapped = format!(
        "SELECT CAST(q.\"{column}\" AS double precision) FROM ({sql}) q",
        column = column.replace('"', "\"\"")
    );
    sqlx::query_scalar::<_, Option<f64>>(sqlx::AssertSqlSafe(wrapped.clone()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{wrapped}: {e}"))
}

fn is_numeric(type_name: &str) -> bool {
    matches!(
        type_name,
        "INT2" | "INT4" | "INT8" | "NUMERIC" | "FLOAT4" | "FLOAT8"
    )
}

/// Runs every dashboard's variable and panel queries against the published
/// marts of `conn`'s database, checking each result has the shape its panel
/// type needs (a time column for time series, one number for a stat, ...).
pub async fn assert_every_panel_runs(conn: &mut sqlx::PgConnection) {
    let mut panels_run = 0;
    for (file, dash) in dashboards() {
        let mut variables = BTreeMap::new();
        for var in dash["templating"]["list"].as_array().expect("templating") {
            let sql = expand(var["query"].as_str().expect("var query"), &variables);
            let values: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{file}: variable query {sql}: {e}"))
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            assert!(
                !values.is_empty(),
                "{file}: variable {} has no values",
                var["name"]
            );
            variables.insert(var["name"].as_str().expect("name").to_string(), values);
        }
        for panel in dash["panels"].as_array().expect("panels") {
            let kind = panel["type"].as_str().expect("type");
            let title = panel["title"].as_str().unwrap_or("");
            for target in panel["targets"].as_array().expect("targets") {
                let sql = expand(target["rawSql"].as_str().expect("rawSql"), &variables);
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap_or_else(|e| panic!("{file} / {title}: {e}\n{sql}"));
                let statement = (&mut *conn)
                    .prepare(sqlx::AssertSqlSafe(sql.clone()).into_sql_str())
                    .await
                    .expect("prepare");
                let columns: Vec<(String, String)> = statement
                    .columns()
                    .iter()
                    .map(|c| (c.name().to_string(), c.type_info().name().to_string()))
                    .collect();
                let numeric = columns.iter().filter(|(_, t)| is_numeric(t)).count();
                let context = format!("{file} / {title}: columns {columns:?}");
                match kind {
                    "timeseries" => {
                        assert_eq!(target["format"], "time_series", "{context}");
                        assert_eq!(columns[0].0, "time", "{context}");
                        assert!(numeric >= 2, "time plus at least one value: {context}");
                        assert!(!rows.is_empty(), "no data: {context}");
                    }
                    "stat" => {
                        assert_eq!(columns.len(), 1, "{context}");
                        // With `reduceOptions.fields` empty a stat panel
                        // shows numeric fields only (Grafana's
                        // getFieldDisplayValues uses the numeric matcher), so
                        // a timestamp column shows "No data".
                        assert_eq!(panel["options"]["reduceOptions"]["fields"], "", "{context}");
                        assert_eq!(numeric, 1, "a stat needs a number: {context}");
                        // Grafana's SQL datasources turn a `time` column into a time field.
                        assert!(
                            !matches!(columns[0].0.as_str(), "time" | "time_sec"),
                            "{context}"
                        );
                        let unit = panel["fieldConfig"]["defaults"]["unit"]
                            .as_str()
                            .unwrap_or_default();
                        if unit.starts_with("dateTime") {
                            // The date units format epoch milliseconds; the
                            // marts were published moments ago.
                            let value = scalar(conn, &sql, &columns[0].0).await;
                            let now = chrono::Utc::now().timestamp_millis() as f64;
                            assert!(
                                value.is_some_and(|v| v > now - 3_600_000.0 && v <= now + 60_000.0),
                                "{context}: {value:?} is not epoch milliseconds of a recent time"
                            );
                        }
                    }
                    "barchart" => {
                        assert_eq!(columns[0].1, "TEXT", "a category column first: {context}");
                        assert!(numeric >= 1, "{context}");
                        assert!(!rows.is_empty(), "no data: {context}");
                    }
                    "table" => assert!(!columns.is_empty(), "{context}"),
                    other => panic!("{file}: panel type {other} is not covered by this test"),
                }
                panels_run += 1;
            }
        }
    }
    assert!(panels_run >= 20, "{panels_run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_on_published_marts() {
    let Some(url) = postgres_url() else { return };
    // A database of its own: the dashboards query the `gold` schema.
    let database = test_schema("grafana_");
    let mut admin = connect(&url).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .await
        .expect("create database");
    let db_url = match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => panic!("{url}"),
    };
    let mut lake = shipped_lake();
    lake.config.postgres.url = Some(db_url.clone());
    let rounds = shop_records(9, 1, 200);
    lake.feed(&rounds[0]).await;
    lake.feed(&rounds[1]).await;
    lake.silver().await;
    let summary = gold_run(&lake, GoldOptions::default()).await;
    assert!(summary.failed_publishes().is_empty(), "{summary}");

    let mut conn = connect(&db_url).await;
    assert_every_panel_runs(&mut conn).await;

    // The lag is measured when the panel is queried, not when gold ran: with
    // nothing published meanwhile it keeps growing (a stopped gold must not
    // look healthy).
    let (_, health) = dashboards()
        .into_iter()
        .find(|(_, d)| d["uid"] == "lakehouse-pipeline")
        .expect("pipeline health dashboard");
    let panel_sql = |title: &str| {
        let panel = health["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title}"));
        expand(
            panel["targets"][0]["rawSql"].as_str().expect("rawSql"),
            &BTreeMap::new(),
        )
    };
    let lag = panel_sql("Max lag (s)");
    let publish = panel_sql("Last gold publish");
    let published_lag = scalar(
        &mut conn,
        "SELECT max(lag_seconds) AS lag FROM gold.pipeline_health",
        "lag",
    )
    .await
    .expect("published lag");
    let first = scalar(&mut conn, &lag, "lag_seconds").await.expect("lag");
    let first_publish = scalar(&mut conn, &publish, "last_published_ms").await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let second = scalar(&mut conn, &lag, "lag_seconds").await.expect("lag");
    // At least what gold saw, plus the time since; the mart's lag comes from
    // whole seconds (`to_unixtime` truncates both ends), so it can be up to
    // one second above the exact lag.
    assert!(first >= published_lag - 1.0, "{first} < {published_lag}");
    assert!(
        second - first >= 1.4,
        "the lag did not grow while nothing was published: {first} then {second}"
    );
    assert_eq!(
        scalar(&mut conn, &publish, "last_published_ms").await,
        first_publish
    );
    drop(conn);
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {database} WITH (FORCE)"
        )))
        .await;
}
