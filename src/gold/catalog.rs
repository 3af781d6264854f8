//! Every table of the lakehouse by name, for gold SQL and `lakehouse query`:
//! the bronze tables, the silver tables and their quarantines, the gold marts,
//! and three system tables built from the Delta logs:
//!
//! - `lakehouse_tables`: per table, its version, last commit time, rows, files, bytes;
//! - `lakehouse_commits`: the latest commits of each table, with the run
//!   metadata the layers store in `commitInfo` (JSON text);
//! - `lakehouse_watermarks`: per silver table and gold mart, the upstream
//!   version it has read up to, the upstream's current version and the gap.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::TryStreamExt;

use super::spec::Marts;
use crate::delta::{session, txn_version, version};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::bronze::{DEAD_LETTERS_TABLE, EVENTS_TABLE, LAYER as BRONZE};
use crate::tables::runs;
use crate::tables::silver::{LAYER as SILVER, quarantine_name, watermark_app_id};

/// Layer folder of the gold marts.
pub use crate::tables::gold::LAYER;
/// Names of the system tables.
pub const SYSTEM_TABLES: &[&str] = &[
    "lakehouse_tables",
    "lakehouse_commits",
    "lakehouse_watermarks",
    "lakehouse_runs",
];
/// Commits per table kept in `lakehouse_commits`.
const HISTORY: usize = 50;

/// The `txn` application id of a mart's watermark on one input table.
pub fn gold_app_id(mart: &str, input: &str) -> String {
    format!("lakehouse-gold:{mart}:{input}")
}

/// One Delta table of the lakehouse.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `bronze`, `silver` or `gold`.
    pub layer: &'static str,
    /// The table's name (unique across layers).
    pub name: String,
    /// The loaded table (version `None`: not created yet).
    pub table: DeltaTable,
}

impl Entry {
    /// `layer.name`, as watermarks and metadata name inputs.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }
}

/// The lakehouse's tables, as of when they were opened.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// By name.
    pub entries: BTreeMap<String, Entry>,
    silver_tables: Vec<String>,
    marts: Vec<String>,
    /// `_lakehouse_runs` (version `None`: no run recorded yet).
    runs: Option<DeltaTable>,
}

impl Catalog {
    /// Opens every known table: bronze, the silver tables and their
    /// quarantines, the gold marts. Tables not created yet are kept with
    /// version `None` and are not registered.
    pub async fn open(root: &StorageRoot, silver_tables: &[String], marts: &Marts) -> Result<Self> {
        let mut names: Vec<(&'static str, String)> = vec![
            (BRONZE, EVENTS_TABLE.to_string()),
            (BRONZE, DEAD_LETTERS_TABLE.to_string()),
        ];
        for table in silver_tables {
            names.push((SILVER, table.clone()));
            names.push((SILVER, quarantine_name(table)));
        }
        for mart in &marts.marts {
            names.push((LAYER, mart.name.clone()));
        }
        let mut catalog = Catalog {
            silver_tables: silver_tables.to_vec(),
            marts: marts.marts.iter().map(|m| m.name.clone()).collect(),
            ..Default::default()
        };
        for (layer, name) in names {
            let table = root.open_table(layer, &name).await?;
            catalog
                .entries
                .insert(name.clone(), Entry { layer, name, table });
        }
        catalog.runs = Some(runs::open(root).await?);
        Ok(catalog)
    }

    /// Reloads one table (after a gold commit).
    pub async fn refresh(&mut self, root: &StorageRoot, name: &str) -> Result<()> {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.table = root.open_table(entry.layer, name).await?;
        }
        Ok(())
    }

    /// The existing table `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries
            .get(name)
            .filter(|e| e.table.version().is_some())
    }

    /// Registers every existing Delta table and the system tables in `ctx`
    /// (replacing earlier registrations).
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        self.register_tables(ctx).await?;
        self.register_system(ctx).await
    }

    /// Registers every existing Delta table in `ctx`, not the system tables
    /// (whose history reads cost ~0.5 s; gold builds them once per run).
    pub async fn register_tables(&self, ctx: &SessionContext) -> Result<()> {
        for name in self.entries.keys() {
            self.register_one(ctx, name).await?;
        }
        Ok(())
    }

    /// (Re)registers table `name` in `ctx`, when it exists.
    pub async fn register_one(&self, ctx: &SessionContext, name: &str) -> Result<()> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(());
        };
        if entry.table.version().is_none() {
            return Ok(());
        }
        let provider = session::table_provider(ctx, &entry.table, &entry.name).await?;
        let _ = ctx.deregister_table(entry.name.as_str())?;
        ctx.register_table(entry.name.as_str(), provider)?;
        Ok(())
    }

    /// (Re)builds the system tables from the Delta logs.
    pub async fn register_system(&self, ctx: &SessionContext) -> Result<()> {
        let tables = self.tables_batch()?;
        let commits = self.commits_batch().await?;
        let watermarks = self.watermarks_batch().await?;
        for (name, batch) in [
            ("lakehouse_tables", tables),
            ("lakehouse_commits", commits),
            ("lakehouse_watermarks", watermarks),
        ] {
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
            let _ = ctx.deregister_table(name)?;
            ctx.register_table(name, Arc::new(table))?;
        }
        self.register_runs(ctx).await
    }

    /// Registers, for planning without data (`lakehouse validate`), an
    /// empty table per entry of `tables` (name and columns: the silver
    /// tables, their quarantines, marts already planned), bronze's tables
    /// and the system tables, all empty, so SQL plans as it would over the
    /// lake.
    pub async fn register_empty(
        ctx: &SessionContext,
        tables: &[(String, SchemaRef)],
    ) -> Result<()> {
        let bronze = [
            (
                EVENTS_TABLE.to_string(),
                crate::tables::bronze::events_schema(),
            ),
            (
                DEAD_LETTERS_TABLE.to_string(),
                crate::tables::bronze::dead_letters_schema(),
            ),
            ("lakehouse_runs".to_string(), runs::runs_schema()),
        ];
        for (name, schema) in bronze.iter().chain(tables) {
            let table = MemTable::try_new(schema.clone(), vec![vec![]])?;
            let _ = ctx.deregister_table(name.as_str())?;
            ctx.register_table(name.as_str(), Arc::new(table))?;
        }
        // An empty catalog builds the other system tables with no rows.
        let empty = Catalog::default();
        for (name, batch) in [
            ("lakehouse_tables", empty.tables_batch()?),
            ("lakehouse_commits", empty.commits_batch().await?),
            ("lakehouse_watermarks", empty.watermarks_batch().await?),
        ] {
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
            let _ = ctx.deregister_table(name)?;
            ctx.register_table(name, Arc::new(table))?;
        }
        Ok(())
    }

    /// Registers the run history as `lakehouse_runs` (empty when none yet).
    async fn register_runs(&self, ctx: &SessionContext) -> Result<()> {
        match &self.runs {
            Some(runs) => runs::register_loaded(ctx, runs, "lakehouse_runs").await,
            None => Ok(()),
        }
    }

    fn tables_batch(&self) -> Result<RecordBatch> {
        let mut cols = TableColumns::default();
        for entry in self.entries.values() {
            let Some(v) = version(&entry.table) else {
                continue;
            };
            let snapshot = entry
                .table
                .snapshot()
                .map_err(|e| Error::delta(&entry.name, e))?;
            let (mut rows, mut files, mut bytes, mut last) = (0i64, 0i64, 0i64, None::<i64>);
            for file in snapshot.log_data() {
                files += 1;
                bytes += file.size();
                let modified = file.modification_time() * 1000;
                last = Some(last.map_or(modified, |l: i64| l.max(modified)));
                rows += file
                    .stats()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .and_then(|s| s.get("numRecords").and_then(|n| n.as_i64()))
                    .unwrap_or(0);
            }
            cols.names.push(entry);
            cols.version.push(v);
            cols.last_file_at.push(last);
            cols.rows.push(rows);
            cols.files.push(files);
            cols.bytes.push(bytes);
        }
        let schema = schema(&[
            ("version", DataType::Int64),
            ("last_file_at", ts_type()),
            ("rows", DataType::Int64),
            ("files", DataType::Int64),
            ("bytes", DataType::Int64),
        ]);
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(cols.names.layer)),
                Arc::new(StringArray::from(cols.names.table)),
                Arc::new(Int64Array::from(cols.version)),
                Arc::new(TimestampMicrosecondArray::from(cols.last_file_at).with_timezone("UTC")),
                Arc::new(Int64Array::from(cols.rows)),
                Arc::new(Int64Array::from(cols.files)),
                Arc::new(Int64Array::from(cols.bytes)),
            ],
        )?)
    }

    async fn commits_batch(&self) -> Result<RecordBatch> {
        let mut names = TableNames::default();
        let mut versions = Vec::new();
        let mut committed_at = Vec::new();
        let mut operations = Vec::new();
        let mut metadata = Vec::new();
        for entry in self.entries.values() {
            let Some(current) = version(&entry.table) else {
                continue;
            };
            let infos: Vec<_> = entry
                .table
                .history(Some(HISTORY))
                .try_collect()
                .await
                .map_err(|e| Error::delta(&entry.name, e))?;
            // Newest first, one per version.
            for (i, info) in infos.into_iter().enumerate() {
                let lakehouse: serde_json::Map<String, serde_json::Value> = info
                    .info
                    .iter()
                    .filter(|(k, _)| k.starts_with("lakehouse."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                names.push(entry);
                versions.push(current - i as i64);
                committed_at.push(
                    info.in_commit_timestamp
                        .or(info.timestamp)
                        .map(|ms| ms * 1000),
                );
                operations.push(info.operation.clone());
                metadata.push(
                    (!lakehouse.is_empty())
                        .then(|| serde_json::Value::Object(lakehouse).to_string()),
                );
            }
        }
        let schema = schema(&[
            ("version", DataType::Int64),
            ("committed_at", ts_type()),
            ("operation", DataType::Utf8),
            ("metadata", DataType::Utf8),
        ]);
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.layer)),
                Arc::new(StringArray::from(names.table)),
                Arc::new(Int64Array::from(versions)),
                Arc::new(TimestampMicrosecondArray::from(committed_at).with_timezone("UTC")),
                Arc::new(StringArray::from(operations)),
                Arc::new(StringArray::from(metadata)),
            ],
        )?)
    }

    async fn watermarks_batch(&self) -> Result<RecordBatch> {
        let mut names = TableNames::default();
        let mut app_ids = Vec::new();
        let mut upstreams = Vec::new();
        let mut watermarks = Vec::new();
        let mut upstream_versions = Vec::new();
        let mut behind = Vec::new();
        let bronze_version = self.get(EVENTS_TABLE).and_then(|e| version(&e.table));
        let mut push =
            |layer: &str, table: &str, app: String, up: String, w: Option<i64>, uv: Option<i64>| {
                names.layer.push(layer.to_string());
                names.table.push(table.to_string());
                app_ids.push(app);
                upstreams.push(up);
                watermarks.push(w);
                upstream_versions.push(uv);
                behind.push(uv.map(|uv| uv - w.unwrap_or(-1)));
            };
        for name in &self.silver_tables {
            let Some(entry) = self.get(name) else {
                continue;
            };
            let app = watermark_app_id(name);
            let w = txn_version(&entry.table, name, &app).await?;
            push(
                "silver",
                name,
                app,
                format!("{BRONZE}.{EVENTS_TABLE}"),
                w,
                bronze_version,
            );
        }
        for name in &self.marts {
            let Some(entry) = self.get(name) else {
                continue;
            };
            for input in self.entries.values() {
                let app = gold_app_id(name, &input.qualified());
                let w = txn_version(&entry.table, name, &app).await?;
                if w.is_some() {
                    push(
                        LAYER,
                        name,
                        app,
                        input.qualified(),
                        w,
                        version(&input.table),
                    );
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("layer", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("app_id", DataType::Utf8, false),
            Field::new("upstream", DataType::Utf8, false),
            Field::new("watermark", DataType::Int64, true),
            Field::new("upstream_version", DataType::Int64, true),
            Field::new("versions_behind", DataType::Int64, true),
        ]));
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.layer)),
                Arc::new(StringArray::from(names.table)),
                Arc::new(StringArray::from(app_ids)),
                Arc::new(StringArray::from(upstreams)),
                Arc::new(Int64Array::from(watermarks)),
                Arc::new(Int64Array::from(upstream_versions)),
                Arc::new(Int64Array::from(behind)),
            ],
        )?)
    }
}

/// The `layer` and `table_name` columns every system table starts with.
#[derive(Default)]
struct TableNames {
    layer: Vec<String>,
    table: Vec<String>,
}

impl TableNames {
    fn push(&mut self, entry: &Entry) {
        self.layer.push(entry.layer.to_string());
        self.table.push(entry.name.clone());
    }
}

/// The columns of `lakehouse_tables`.
#[derive(Default)]
struct TableColumns {
    names: TableNames,
    version: Vec<i64>,
    last_file_at: Vec<Option<i64>>,
    rows: Vec<i64>,
    files: Vec<i64>,
    bytes: Vec<i64>,
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn schema(rest: &[(&str, DataType)]) -> SchemaRef {
    let mut fields = vec![
        Field::new("layer", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
    ];
    fields.extend(
        rest.iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), true)),
    );
    Arc::new(Schema::new(fields))
}
