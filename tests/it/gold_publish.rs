//! Publishing the shipped marts to a real Postgres (LAKEHOUSE_TEST_POSTGRES):
//! exact types, keys and indexes, the staging swap under concurrent readers,
//! retries and republishing after a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lakehouse::pipeline::jobs::GoldOptions;
use sqlx::Row;

use crate::gold_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marts_publish_with_exact_types_keys_indexes_and_an_atomic_swap() {
    let Some(url) = postgres_url() else { return };
    let mut lake = shipped_lake();
    let schema = test_schema("gold_");
    lake.config.postgres.url = Some(url.clone());
    lake.config.postgres.schema = schema.clone();
    let rounds = shop_records(3, 1, 40);
    lake.feed(&rounds[0]).await;
    lake.feed(&rounds[1]).await;
    lake.silver().await;
    let summary = gold_run(&lake, GoldOptions::default()).await;
    eprintln!("{summary}");
    assert!(summary.failed_publishes().is_empty(), "{summary}");
    assert_eq!(summary.published.len(), summary.marts.len());

    let mut conn = connect(&url).await;
    // Every mart holds its Delta rows, and Postgres records the version.
    for run in &summary.marts {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.{}",
            run.mart
        )))
        .fetch_one(&mut conn)
        .await
        .expect("count");
        let delta =
            crate::gold_marts::mart_rows(&lake, &format!("SELECT count(*) FROM {}", run.mart))
                .await;
        assert_eq!(rows.to_string(), delta[0][0], "{}", run.mart);
        let version: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT delta_version FROM {schema}._lakehouse_published WHERE mart = $1"
        )))
        .bind(&run.mart)
        .fetch_one(&mut conn)
        .await
        .expect("published version");
        assert_eq!(Some(version), run.current_version, "{}", run.mart);
    }
    // Exact types.
    let types: Vec<(String, String, String)> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT table_name::text, column_name::text, \
         CASE WHEN data_type = 'numeric' THEN format('numeric(%s,%s)', numeric_precision, numeric_scale) ELSE data_type END \
         FROM information_schema.columns WHERE table_schema = '{schema}'"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("columns")
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let type_of = |t: &str, c: &str| {
        types
            .iter()
            .find(|(tt, cc, _)| tt == t && cc == c)
            .map(|(_, _, ty)| ty.clone())
            .unwrap_or_else(|| panic!("{t}.{c} missing"))
    };
    assert_eq!(type_of("daily_sales", "order_date"), "date");
    assert_eq!(type_of("daily_sales", "net_revenue"), "numeric(18,2)");
    assert_eq!(type_of("daily_sales", "orders"), "bigint");
    assert_eq!(
        type_of("pipeline_health", "checked_at"),
        "timestamp with time zone"
    );
    assert_eq!(
        type_of("product_performance", "list_price"),
        "numeric(10,2)"
    );
    assert_eq!(
        type_of("shipping_performance", "p90_delivery_days"),
        "double precision"
    );
    // Decimals arrive exactly.
    let pg_sum: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT sum(net_revenue)::text FROM {schema}.daily_sales"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("sum");
    let delta_sum =
        crate::gold_marts::mart_rows(&lake, "SELECT sum(net_revenue) FROM daily_sales").await;
    assert_eq!(pg_sum, delta_sum[0][0]);
    // Primary keys and indexes from the specs.
    let indexes: Vec<(String, String)> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = '{schema}'"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("indexes")
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let def = |name: &str| {
        indexes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("index {name} missing: {indexes:?}"))
    };
    assert!(
        def("daily_sales_pkey").contains("UNIQUE")
            && def("daily_sales_pkey").contains("(order_date)")
    );
    assert!(def("category_daily_pkey").contains("(order_date, category_id)"));
    assert!(def("category_daily_idx0").contains("(category_id)"));
    assert!(def("shipping_performance_idx0").contains("(carrier_code, ship_date)"));
    assert!(
        !indexes.iter().any(|(n, _)| n.contains("staging")),
        "{indexes:?}"
    );

    // Nothing new: nothing republished (pipeline health changes every run).
    let again = gold_run(&lake, GoldOptions::default()).await;
    for p in &again.published {
        assert!(p.up_to_date || p.mart == "pipeline_health", "{p}");
    }

    // Readers never see a half-updated mart: republish repeatedly while a
    // reader checks every read returns the whole mart.
    let expected: (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), sum(net_revenue)::text FROM {schema}.daily_sales"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("expected");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, url, schema, expected) =
            (stop.clone(), url.clone(), schema.clone(), expected.clone());
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let got: (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*), sum(net_revenue)::text FROM {schema}.daily_sales"
                )))
                .fetch_one(&mut conn)
                .await
                .expect("a read during the swap failed");
                assert_eq!(got, expected, "a reader saw a partial mart");
                reads += 1;
            }
            reads
        })
    };
    let only_daily = GoldOptions {
        full_refresh: Some(vec!["daily_sales".into()]),
        marts: vec!["daily_sales".into()],
        no_publish: false,
    };
    for _ in 0..3 {
        let run = gold_run(&lake, only_daily.clone()).await;
        assert!(
            run.published
                .iter()
                .all(|p| !p.up_to_date && p.error.is_none()),
            "{run}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    assert!(reads > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_publish_is_retried_reported_and_done_by_the_next_run() {
    let Some(url) = postgres_url() else { return };
    let mut lake = shipped_lake();
    let schema = test_schema("gold_retry_");
    lake.config.postgres.schema = schema.clone();
    lake.config.postgres.retries = 2;
    lake.config.postgres.connect_timeout_ms = 2_000;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    lake.config.postgres.url = Some(format!("postgres://postgres@127.0.0.1:{port}/nope"));
    let rounds = shop_records(5, 1, 30);
    lake.feed(&rounds[0]).await;
    lake.feed(&rounds[1]).await;
    lake.silver().await;
    let failed = gold_run(
        &lake,
        GoldOptions {
            marts: vec!["daily_sales".into(), "payment_mix".into()],
            ..Default::default()
        },
    )
    .await;
    let failures = failed.failed_publishes();
    assert_eq!(failures.len(), 2, "{failed}");
    assert!(failures.iter().all(|f| f.attempts == 3), "{failed}");
    assert!(failed.to_string().contains("FAILED"), "{failed}");
    // The Delta marts are committed regardless.
    assert!(failed.marts.iter().all(|m| m.version.is_some()));

    lake.config.postgres.url = Some(url.clone());
    let next = gold_run(
        &lake,
        GoldOptions {
            marts: vec!["daily_sales".into(), "payment_mix".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(
        next.marts.iter().all(|m| m.version.is_none()),
        "nothing rebuilt: {next}"
    );
    assert_eq!(next.published.len(), 2);
    assert!(
        next.published
            .iter()
            .all(|p| p.error.is_none() && !p.up_to_date && p.rows > 0),
        "{next}"
    );
    let mut conn = connect(&url).await;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.payment_mix"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert!(rows > 0);

    // Another lake (same mart versions) publishing into the same schema is
    // not mistaken for the published one.
    let mut other = shipped_lake();
    other.config.postgres = lake.config.postgres.clone();
    let rounds = shop_records(6, 1, 30);
    other.feed(&rounds[0]).await;
    other.feed(&rounds[1]).await;
    other.silver().await;
    let replaced = gold_run(
        &other,
        GoldOptions {
            marts: vec!["daily_sales".into(), "payment_mix".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(
        replaced
            .published
            .iter()
            .all(|p| !p.up_to_date && p.error.is_none()),
        "{replaced}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_owning_only_its_schema_publishes() {
    let Some(url) = postgres_url() else { return };
    // The least privilege docs/debezium.md gives the publishing role: its
    // own schema, no CREATE on the database (PUBLIC has none by default).
    let schema = test_schema("gold_owned_");
    let role = format!("{schema}_writer");
    let mut admin = connect(&url).await;
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE SCHEMA {schema} AUTHORIZATION {role}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect("set up the role");
    }
    let mut as_role = url::Url::parse(&url).expect("test url");
    as_role.set_username(&role).expect("user");
    let can_create: bool =
        sqlx::query_scalar("SELECT has_database_privilege($1, current_database(), 'CREATE')")
            .bind(&role)
            .fetch_one(&mut admin)
            .await
            .expect("privilege");
    assert!(!can_create, "the role must not have CREATE on the database");

    let mut lake = shipped_lake();
    lake.config.postgres.url = Some(as_role.to_string());
    lake.config.postgres.schema = schema.clone();
    let rounds = shop_records(7, 1, 20);
    lake.feed(&rounds[0]).await;
    lake.silver().await;
    let options = GoldOptions {
        marts: vec!["daily_sales".into()],
        ..Default::default()
    };
    let summary = gold_run(&lake, options.clone()).await;
    assert!(summary.failed_publishes().is_empty(), "{summary}");
    // Published again after a change: the swap replaces the role's table.
    lake.feed(&rounds[1]).await;
    lake.silver().await;
    let again = gold_run(&lake, options).await;
    assert!(again.failed_publishes().is_empty(), "{again}");
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.daily_sales"
    )))
    .fetch_one(&mut admin)
    .await
    .expect("count");
    let delta = crate::gold_marts::mart_rows(&lake, "SELECT count(*) FROM daily_sales").await;
    assert!(rows > 0);
    assert_eq!(rows.to_string(), delta[0][0]);
}
