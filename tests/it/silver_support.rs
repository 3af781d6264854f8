//! Silver test plumbing: a lake in a temp folder, Debezium JSON lines fed
//! through bronze, silver runs, and table reads as sorted text rows.

use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::config::Config;
use lakehouse::silver::{FullRefresh, RunOptions, RunSummary};
use lakehouse::storage::StorageRoot;
use serde_json::{Value, json};

/// A lake with its own specs and SQL.
pub struct Lake {
    pub dir: tempfile::TempDir,
    pub config: Config,
    input: PathBuf,
}

impl Lake {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.storage.root = dir.path().join("lake").display().to_string();
        config.silver.layers_dir = dir.path().join("layers");
        config.silver.sql_dir = dir.path().join("sql");
        config.silver.memory_limit = 256 * 1024 * 1024;
        config.bronze.flush_rows = 1_000_000;
        std::fs::create_dir_all(&config.silver.layers_dir).expect("layers dir");
        std::fs::create_dir_all(&config.silver.sql_dir).expect("sql dir");
        let input = dir.path().join("input.jsonl");
        std::fs::File::create(&input).expect("input");
        Self { dir, config, input }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `layers/<name>.toml` and `sql/<name>.sql`.
    pub fn table(&self, name: &str, spec: &str, sql: &str) {
        std::fs::write(
            self.config.silver.layers_dir.join(format!("{name}.toml")),
            spec,
        )
        .expect("spec");
        if !sql.is_empty() {
            std::fs::write(self.config.silver.sql_dir.join(format!("{name}.sql")), sql)
                .expect("sql");
        }
    }

    /// Appends records and ingests them into bronze (one bronze commit).
    pub async fn feed(&self, records: &[String]) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.input)
            .expect("open input");
        for record in records {
            writeln!(file, "{record}").expect("write input");
        }
        drop(file);
        lakehouse::pipeline::jobs::bronze(
            &self.config,
            BronzeSource::Files(vec![self.input.clone()]),
            StopCondition::default(),
            tokio::sync::watch::channel(false).1,
        )
        .await
        .expect("bronze run");
    }

    pub async fn silver(&self) -> RunSummary {
        self.try_silver(FullRefresh::No).await.expect("silver run")
    }

    pub async fn try_silver(&self, full_refresh: FullRefresh) -> lakehouse::Result<RunSummary> {
        lakehouse::pipeline::jobs::silver(
            &self.config,
            &RunOptions {
                full_refresh,
                tables: Vec::new(),
            },
        )
        .await
    }

    /// Rows of `sql` over the silver tables, each as text cells, sorted.
    pub async fn rows(&self, tables: &[&str], sql: &str) -> Vec<Vec<String>> {
        let ctx = SessionContext::new();
        let root = StorageRoot::from_config(&self.config.storage).expect("root");
        for table in tables {
            lakehouse::delta::session::register_table(&ctx, &root, "silver", table)
                .await
                .expect("register");
        }
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("collect");
        let mut rows = text_rows(&batches);
        rows.sort();
        rows
    }

    /// The table's Delta version.
    pub async fn version(&self, layer: &str, table: &str) -> Option<u64> {
        let root = StorageRoot::from_config(&self.config.storage).expect("root");
        root.open_table(layer, table).await.expect("open").version()
    }
}

pub fn text_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    rows
}

/// Builds schemaless Debezium Postgres records as JSON lines.
pub struct Dbz {
    pub prefix: String,
    pub ts: i64,
    /// Which connector's source block the records carry.
    pub connector: Connector,
}

/// The Debezium connector a [`Dbz`] imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connector {
    /// Postgres: `lsn` and `txId` in the source block.
    Postgres,
    /// MySQL: binlog `file`, `pos` and `row`, `server_id`.
    MySql,
}

/// The binlog file number the MySQL flavour writes (`mysql-bin.000003`).
pub const MYSQL_BINLOG_FILE: i128 = 3;

/// The numeric position silver orders a change at `lsn` of `connector` by:
/// the LSN itself, or for MySQL the binlog coordinates `file × 10^16 + pos × 10^6 + row`.
pub fn position(connector: Connector, lsn: i64) -> i128 {
    match connector {
        Connector::Postgres => i128::from(lsn),
        Connector::MySql => MYSQL_BINLOG_FILE * 10_i128.pow(16) + i128::from(lsn) * 10_i128.pow(6),
    }
}

impl Dbz {
    pub fn new() -> Self {
        Self {
            prefix: "shop.public".into(),
            ts: 1_700_000_000_000,
            connector: Connector::Postgres,
        }
    }

    /// Records of the MySQL connector (topic `shop.public.<table>`: database `public`).
    pub fn mysql() -> Self {
        Self {
            connector: Connector::MySql,
            ..Self::new()
        }
    }

    fn line(&self, table: &str, key: Value, value: Value) -> String {
        json!({
            "topic": format!("{}.{table}", self.prefix),
            "partition": 0,
            "key": key,
            "value": value,
        })
        .to_string()
    }

    fn source(&self, table: &str, lsn: i64, ts: i64) -> Value {
        match self.connector {
            Connector::Postgres => json!({
                "version": "2.7.0.Final", "connector": "postgresql", "name": "shop",
                "ts_ms": ts, "snapshot": "false", "db": "shop", "schema": "public",
                "table": table, "txId": lsn, "lsn": lsn,
            }),
            Connector::MySql => json!({
                "version": "2.7.0.Final", "connector": "mysql", "name": "shop",
                "ts_ms": ts, "snapshot": "false", "db": "public", "sequence": null,
                "table": table, "server_id": 1, "gtid": null,
                "file": format!("mysql-bin.{MYSQL_BINLOG_FILE:06}"), "pos": lsn, "row": 0,
                "thread": 7, "query": null,
            }),
        }
    }

    /// A change (`op` c/u/r/d) at `lsn`. `row` is the after image (before for deletes).
    pub fn change(&self, table: &str, op: &str, key: Value, row: Value, lsn: i64) -> String {
        if op == "d" {
            self.change_images(table, op, key, row, Value::Null, lsn)
        } else {
            self.change_images(table, op, key, Value::Null, row, lsn)
        }
    }

    /// A change with both images, as Postgres sends under REPLICA IDENTITY
    /// FULL and MySQL with its default full row image (`before` of an
    /// update is the old row).
    pub fn change_images(
        &self,
        table: &str,
        op: &str,
        key: Value,
        before: Value,
        after: Value,
        lsn: i64,
    ) -> String {
        let ts = self.ts + lsn;
        self.line(
            table,
            key,
            json!({ "before": before, "after": after, "source": self.source(table, lsn, ts), "op": op, "ts_ms": ts }),
        )
    }

    /// A Kafka tombstone for `key`.
    pub fn tombstone(&self, table: &str, key: Value) -> String {
        self.line(table, key, Value::Null)
    }

    /// A truncate at `lsn`.
    pub fn truncate(&self, table: &str, lsn: i64) -> String {
        let ts = self.ts + lsn;
        self.line(
            table,
            Value::Null,
            json!({ "before": null, "after": null, "source": self.source(table, lsn, ts), "op": "t", "ts_ms": ts }),
        )
    }
}
