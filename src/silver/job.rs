//! One table's run: read the new bronze changes, shape them, check the
//! expectations, apply them to the rows they touch, and commit.
//!
//! Order of commits: quarantine, deletes side table, then the table itself
//! with its bronze watermark. Until the last one lands the table is as
//! before; the side commits are replay safe (see [`super::side`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTable;
use deltalake::kernel::{Action as LogAction, Add, Remove, Transaction};
use futures::StreamExt;

use super::apply::{
    self, Applied, ApplyCounts, Changes, DeleteState, EXISTING, Existing, Mode, OutRow, build_batch,
};
use super::changes::{BronzeFile, new_files};
use super::classify::{self, Verdict};
use super::config::SilverConfig;
use super::keys::{Seq, sequences};
use super::layout::Layout;
use super::lookups::{self, Lookup, UNKNOWN};
use super::merge::{self, KeyChunks, MergeState};
use super::plan::{self, Shaped};
use super::side::{self, Deletes, Quarantined};
use super::spec::{Action, DeleteMode, Kind, Pipeline, SourceSpec, TableSpec};
use super::{LAYER, watermark_app_id};
use crate::delta::{self, KeyValues, TableFile};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// What a table's run did.
#[derive(Debug, Clone, Default)]
pub struct TableRun {
    /// The table.
    pub table: String,
    /// The table version committed (`None`: nothing new, nothing committed).
    pub version: Option<i64>,
    /// Bronze versions read: `(after, upto]` (`after = None`: from the start).
    pub bronze_after: Option<i64>,
    /// See `bronze_after`.
    pub bronze_upto: Option<i64>,
    /// Bronze rows read.
    pub rows_in: u64,
    /// What the changes did.
    pub counts: ApplyCounts,
    /// Fact rows whose unknown members were resolved.
    pub repaired: u64,
    /// Per expectation: (rule, action, failing rows).
    pub expectations: Vec<(String, Action, u64)>,
    /// Rows quarantined (including null keys).
    pub quarantined: u64,
    /// Files removed and added (a file whose rows were marked deleted is
    /// removed and added again, with its deletion vector).
    pub files_removed: usize,
    /// See `files_removed`.
    pub files_added: usize,
    /// Files that had rows marked deleted instead of being rewritten.
    pub deletion_vectors: usize,
    /// Times a batch's lookups were split in halves to fit the memory pool.
    pub lookup_splits: u64,
    /// Where the run spent its time.
    pub phases: Phases,
}

/// Where a table's run spent its wall time, logged per table: the
/// profile of an incremental run at a glance.
#[derive(Debug, Clone, Default)]
pub struct Phases {
    /// Opening the tables, planning the SQL and the lookups.
    pub setup: Duration,
    /// Reading, shaping and sorting the new bronze changes.
    pub scan: Duration,
    /// Resolving fact lookups, repairs included.
    pub lookups: Duration,
    /// Reading the files that may hold the changed keys, and their recorded deletes.
    pub read: Duration,
    /// Applying the changes in memory and building the rows to write.
    pub apply: Duration,
    /// Writing data files.
    pub write: Duration,
    /// Side tables and the table's commit.
    pub commit: Duration,
}

/// Shared inputs of a run.
pub struct RunContext<'a> {
    /// The session of lookups, file reads and side tables.
    pub ctx: &'a SessionContext,
    /// The session the new changes are read and sorted in (a pool of its own).
    pub scan: &'a datafusion::execution::session_state::SessionState,
    /// Storage.
    pub root: &'a StorageRoot,
    /// `[silver]`.
    pub config: &'a SilverConfig,
    /// All specs.
    pub pipeline: &'a Pipeline,
    /// `bronze_events`, when it exists.
    pub bronze: Option<&'a DeltaTable>,
}

fn lookup_app_id(fact: &str, dim: &str) -> String {
    format!("lakehouse-silver-lookup:{fact}:{dim}")
}

/// Runs one source-fed table (SCD1, SCD2, fact).
///
/// The steps, each a function below: read the watermarks, find the window
/// of new bronze files, plan the SQL, stop early when idle, open the target
/// table, start reading the changes, load or merge them chunk by chunk,
/// then commit the side tables and the table with its watermarks.
pub async fn run_table(
    rc: &RunContext<'_>,
    spec: &TableSpec,
    full_refresh: bool,
) -> Result<TableRun> {
    let setting_up = Instant::now();
    let source = spec
        .source
        .as_ref()
        .ok_or_else(|| spec.error("source: missing"))?;
    let marks = Marks::read(rc, spec).await?;
    let window = Window::find(rc, source, &marks, full_refresh).await?;
    let run = TableRun {
        table: spec.name.clone(),
        bronze_after: window.after,
        bronze_upto: window.upto,
        ..Default::default()
    };
    // The SQL is planned on every run, so a broken spec fails even when idle.
    let (shaped, layout) = plan_sql(rc, spec, &window, &marks.lookups).await?;
    let repair = marks.lookups_changed && !full_refresh && marks.existing.version().is_some();
    if is_idle(spec, &marks, &window, full_refresh, repair)? {
        finish_idle(rc, spec, &layout).await?;
        return Ok(run);
    }
    let mut target = Target::open(rc, spec, &layout, full_refresh, marks.watermark).await?;
    let frame = changes_frame(rc, spec, &shaped).await?;
    let mut work = Work::new(
        rc,
        spec,
        &shaped,
        &layout,
        &marks.lookups,
        target.relayout.as_ref(),
        run,
    )
    .await?;
    let (mut stream, frame_schema) = execute(frame).await?;
    work.run.phases.setup = setting_up.elapsed();
    let removes = if target.full_load {
        work.load_all(&target, &mut stream, full_refresh).await?
    } else {
        work.merge_all(&target, &mut stream, frame_schema, repair, marks.watermark)
            .await?
    };
    forget_views(rc.ctx, spec)?;
    let Some(upto) = window.upto else {
        return Ok(work.run);
    };
    if work.nothing_to_commit(&window, &removes, full_refresh) {
        return Ok(work.run);
    }
    work.commit(
        &mut target.delta,
        &mut target.deletes,
        &marks,
        (window.after, upto),
        removes,
        full_refresh,
    )
    .await
}

/// Where the table stands before the run: what it has read of bronze and
/// of each dimension it looks up. Both live in the table's own Delta log
/// (`txn` actions), so they move with its data in one commit.
struct Marks {
    /// The table as it is (possibly not yet created).
    existing: DeltaTable,
    /// The app id of the bronze watermark.
    app_id: String,
    /// The bronze version read up to (`None`: never run).
    watermark: Option<i64>,
    /// The bronze version now.
    bronze_version: Option<i64>,
    /// A fact's lookups (empty for dimensions).
    lookups: Vec<Lookup>,
    /// Whether a looked-up dimension has committed since the fact last
    /// read it: facts pointing at its unknown member may now resolve.
    lookups_changed: bool,
}

impl Marks {
    /// Reads the watermarks and prepares a fact's lookups. Fails when the
    /// table has read past bronze's current version: bronze was rebuilt,
    /// and an incremental run would silently skip its new commits.
    async fn read(rc: &RunContext<'_>, spec: &TableSpec) -> Result<Self> {
        let existing = rc.root.open_table(LAYER, &spec.name).await?;
        let app_id = watermark_app_id(&spec.name);
        let watermark = delta::txn_version(&existing, &spec.name, &app_id).await?;
        let bronze_version = rc.bronze.and_then(delta::version);
        let lookups = if spec.kind == Kind::Fact {
            lookups::prepare(rc.ctx, rc.root, rc.pipeline, spec).await?
        } else {
            Vec::new()
        };
        let mut lookups_changed = false;
        for lookup in &lookups {
            if let Some(version) = lookup.version {
                let seen = delta::txn_version(
                    &existing,
                    &spec.name,
                    &lookup_app_id(&spec.name, lookup.table()),
                )
                .await?;
                lookups_changed |= seen.is_none_or(|s| s < version);
            }
        }
        if let (Some(w), Some(l)) = (watermark, bronze_version)
            && w > l
        {
            return Err(Error::Condition(format!(
                "silver table `{}` has read bronze up to version {w} but bronze_events is at {l}; \
                 was bronze rebuilt? Rebuild silver with `--full-refresh`",
                spec.name
            )));
        }
        Ok(Self {
            existing,
            app_id,
            watermark,
            bronze_version,
            lookups,
            lookups_changed,
        })
    }

    /// The watermarks the commit records: bronze read up to `upto`, and
    /// each lookup's dimension version, so the next run knows what it saw.
    fn transactions(&self, spec: &TableSpec, upto: i64) -> Vec<Transaction> {
        let mut txns = vec![Transaction::new(&self.app_id, upto)];
        for lookup in &self.lookups {
            if let Some(version) = lookup.version {
                txns.push(Transaction::new(
                    lookup_app_id(&spec.name, lookup.table()),
                    version,
                ));
            }
        }
        txns
    }
}

/// The change window of the run: bronze versions `(after, upto]` and the
/// files of the table's topic they added.
struct Window {
    /// Read after this version (`None`: from the start).
    after: Option<i64>,
    /// Read up to this version (`None`: bronze does not exist yet).
    upto: Option<i64>,
    /// The new bronze files (empty when nothing is new).
    files: Vec<BronzeFile>,
}

impl Window {
    /// The window after the watermark, or all of bronze on a full refresh.
    /// Only the commits since the watermark are read, so an incremental
    /// run costs what is new, not what bronze holds.
    async fn find(
        rc: &RunContext<'_>,
        source: &SourceSpec,
        marks: &Marks,
        full_refresh: bool,
    ) -> Result<Self> {
        let after = if full_refresh { None } else { marks.watermark };
        let files = match (rc.bronze, marks.bronze_version) {
            (Some(bronze), Some(upto)) if after != Some(upto) => {
                new_files(bronze, &[source.topic.as_str()], after, upto).await?
            }
            _ => Vec::new(),
        };
        Ok(Self {
            after,
            upto: marks.bronze_version,
            files,
        })
    }
}

/// Registers the window's rows as the SQL's source and plans the SQL: the
/// shaped columns and the table layout they give.
async fn plan_sql(
    rc: &RunContext<'_>,
    spec: &TableSpec,
    window: &Window,
    lookups: &[Lookup],
) -> Result<(Shaped, Layout)> {
    plan::register_source(rc.ctx, spec, &window.files).await?;
    let shaped = plan::shape(rc.ctx, spec).await?;
    let layout = Layout::new(spec, &shaped, lookups)?;
    Ok((shaped, layout))
}

/// Whether the run has nothing to do: no new files, no full refresh, no
/// repair, and a table that exists and holds data (or needs no unknown
/// member, which a table created empty still lacks).
fn is_idle(
    spec: &TableSpec,
    marks: &Marks,
    window: &Window,
    full_refresh: bool,
    repair: bool,
) -> Result<bool> {
    let holds_data = !delta::files(&marks.existing, &spec.name)?.is_empty() || !spec.unknown_member;
    Ok(window.files.is_empty()
        && !full_refresh
        && !repair
        && marks.existing.version().is_some()
        && holds_data)
}

/// An idle run's only work: drop the source view and create the (empty)
/// table so facts can look it up, and surface a changed SQL schema even
/// without new data.
async fn finish_idle(rc: &RunContext<'_>, spec: &TableSpec, layout: &Layout) -> Result<()> {
    plan::deregister_source(rc.ctx, spec)?;
    ensure_target(rc, spec, layout).await?;
    Ok(())
}

/// Opens the table `spec` writes, creating it with `layout`'s columns when
/// missing; a changed layout is an error with the `--full-refresh` hint.
async fn ensure_target(
    rc: &RunContext<'_>,
    spec: &TableSpec,
    layout: &Layout,
) -> Result<deltalake::DeltaTable> {
    let (table, _) = super::ensure_table(
        rc.root,
        LAYER,
        &spec.name,
        &layout.table_schema,
        &spec.partition_by,
        false,
        &spec.file,
    )
    .await?;
    Ok(table)
}

/// The table the run writes, as the run found it.
struct Target {
    /// The table.
    delta: DeltaTable,
    /// A full refresh's new columns, when they changed.
    relayout: Option<delta::Relayout>,
    /// The deletes side table.
    deletes: Deletes,
    /// The files the table held.
    files: Vec<TableFile>,
    /// Whether the run loads from scratch (full refresh, or an empty
    /// table) instead of merging into the files that hold the keys.
    full_load: bool,
    /// A load's recorded deletes (see [`Target::open`]).
    state: DeleteState,
}

impl Target {
    /// Opens (creating when missing) the table and its deletes side table.
    /// A full refresh that changes the columns commits the new layout with
    /// its data (one commit), so it opens the table without touching it.
    /// A load into an empty table still honours every recorded delete;
    /// incremental chunks load the deletes of their own keys, and a full
    /// refresh starts the deletes over.
    async fn open(
        rc: &RunContext<'_>,
        spec: &TableSpec,
        layout: &Layout,
        full_refresh: bool,
        watermark: Option<i64>,
    ) -> Result<Self> {
        let (delta, relayout) = if full_refresh {
            delta::open_for_refresh(
                rc.root,
                LAYER,
                &spec.name,
                &layout.table_schema,
                &spec.partition_by,
            )
            .await?
        } else {
            (ensure_target(rc, spec, layout).await?, None)
        };
        let deletes = Deletes::open(rc.root, &spec.name, &spec.file).await?;
        let files = delta::files(&delta, &spec.name)?;
        let full_load = full_refresh || files.is_empty();

        let state = if full_refresh || !full_load {
            DeleteState::default()
        } else {
            deletes.load(rc.ctx, watermark).await?
        };
        Ok(Self {
            delta,
            relayout,
            deletes,
            files,
            full_load,
            state,
        })
    }
}

/// The new changes, shaped, with expectation results, sorted by key and
/// Kafka order. Planned in the work session (where the source view is
/// registered) and run in the scan session, whose memory pool is its own,
/// so sorting the backlog does not compete with lookups and file reads.
async fn changes_frame(
    rc: &RunContext<'_>,
    spec: &TableSpec,
    shaped: &Shaped,
) -> Result<DataFrame> {
    let frame = plan::changes_frame(rc.ctx, spec, shaped).await?;
    Ok(DataFrame::new(
        rc.scan.clone(),
        frame.into_unoptimized_plan(),
    ))
}

/// Starts `frame`, keeping its schema for the empty last chunk a merge
/// runs when the stream ends on a chunk boundary.
async fn execute(frame: DataFrame) -> Result<(SendableRecordBatchStream, SchemaRef)> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let stream = crate::delta::session::execute_stream(frame).await?;
    Ok((stream, schema))
}

/// Drops the run's views from the work session, which every table of the
/// run shares: nothing of this table outlives its run there.
fn forget_views(ctx: &SessionContext, spec: &TableSpec) -> Result<()> {
    plan::deregister_source(ctx, spec)?;
    let _ = ctx.deregister_table(format!("__shaped_{}", spec.name))?;
    Ok(())
}

/// The stream's next batch, the wait added to `spent`.
async fn next_timed(
    stream: &mut SendableRecordBatchStream,
    spent: &mut Duration,
) -> Option<datafusion::error::Result<RecordBatch>> {
    let started = Instant::now();
    let next = stream.next().await;
    *spent += started.elapsed();
    next
}

fn run_metadata(run: &TableRun) -> serde_json::Map<String, serde_json::Value> {
    let expectations: serde_json::Map<String, serde_json::Value> = run
        .expectations
        .iter()
        .map(|(rule, action, failed)| {
            (
                rule.clone(),
                serde_json::json!({ "action": action.name(), "failed": failed }),
            )
        })
        .collect();
    let mut map = serde_json::Map::new();
    map.insert(
        "lakehouse.silver".into(),
        serde_json::json!({
            "bronze_after": run.bronze_after,
            "bronze_upto": run.bronze_upto,
            "rows_in": run.rows_in,
            "inserted": run.counts.inserted,
            "updated": run.counts.updated,
            "deleted": run.counts.deleted,
            "versions_closed": run.counts.versions,
            "stale": run.counts.stale,
            "truncates": run.counts.truncates,
            "repaired": run.repaired,
            "quarantined": run.quarantined,
            "expectations": expectations,
        }),
    );
    map
}

fn tracked_columns(spec: &TableSpec, layout: &Layout) -> Result<Vec<usize>> {
    if spec.kind != Kind::Scd2 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = match &spec.track {
        Some(track) => track.clone(),
        None => layout
            .data_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !spec.keys.contains(n))
            .collect(),
    };
    names
        .iter()
        .map(|n| {
            layout
                .data_schema
                .index_of(n)
                .map_err(|_| spec.error(format!("track: `{n}` is not a column of the SQL")))
        })
        .collect()
}

/// Sequences of the truncates among the new changes.
async fn truncates_of(ctx: &SessionContext, spec: &TableSpec) -> Result<Vec<Seq>> {
    let view = format!("__shaped_{}", spec.name);
    let batches = ctx
        .sql(&format!(
            "SELECT _position, _source_ts_ms FROM {view} WHERE _is_truncate"
        ))
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for batch in batches {
        out.extend(sequences(
            batch.column(0).as_ref(),
            batch.column(1).as_ref(),
        )?);
    }
    Ok(out)
}

/// The unknown member row (surrogate key -1, everything else null).
fn unknown_member(layout: &Layout) -> Result<RecordBatch> {
    let data = RecordBatch::new_empty(layout.data_schema.clone());
    let nulls: Vec<_> = layout
        .data_schema
        .fields()
        .iter()
        .map(|f| arrow::array::new_null_array(f.data_type(), 1))
        .collect();
    let data = RecordBatch::try_new(data.schema(), nulls)?;
    let row = OutRow {
        row: apply_row_ref_incoming(),
        sk: Some(UNKNOWN),
        valid_from: layout.scd2.then_some(-2_208_988_800_000_000), // 1900-01-01
        valid_to: layout.scd2.then_some(apply::END_OF_TIME_US),
        is_current: true,
        seq: Seq::default(),
    };
    let (data, engine) = build_batch(
        &layout.data_schema,
        &data,
        &data,
        std::slice::from_ref(&row),
    )?;
    layout.assemble(&data, &engine)
}

fn apply_row_ref_incoming() -> apply::RowRef {
    apply::RowRef::incoming(0)
}

/// One table's run in progress: what it has decided and written so far.
struct Work<'a> {
    rc: &'a RunContext<'a>,
    spec: &'a TableSpec,
    shaped: &'a Shaped,
    layout: &'a Layout,
    lookups: &'a [Lookup],
    mode: Mode,
    truncates: Vec<Seq>,
    /// A full refresh's new columns, when they changed.
    relayout: Option<&'a delta::Relayout>,
    quarantine: Vec<Quarantined>,
    expectation_counts: Vec<u64>,
    tombstones: Vec<(String, Seq)>,
    adds: Vec<Add>,
    run: TableRun,
}

impl<'a> Work<'a> {
    /// Starts the work: reads the truncates among the new changes (only
    /// when deletes apply; they are applied from this list, not as rows)
    /// and settles how changes apply, checking the tracked columns.
    async fn new(
        rc: &'a RunContext<'a>,
        spec: &'a TableSpec,
        shaped: &'a Shaped,
        layout: &'a Layout,
        lookups: &'a [Lookup],
        relayout: Option<&'a delta::Relayout>,
        run: TableRun,
    ) -> Result<Self> {
        let apply_deletes = spec.deletes == DeleteMode::Apply;
        let truncates = if apply_deletes {
            truncates_of(rc.ctx, spec).await?
        } else {
            Vec::new()
        };
        let mode = Mode {
            scd2: spec.kind == Kind::Scd2,
            apply_deletes,
            surrogate_key: spec.surrogate_key.is_some(),
            tracked: tracked_columns(spec, layout)?,
        };
        Ok(Self {
            rc,
            spec,
            shaped,
            layout,
            lookups,
            mode,
            truncates,
            relayout,
            quarantine: Vec::new(),
            expectation_counts: vec![0; spec.expectations.len()],
            tombstones: Vec::new(),
            adds: Vec::new(),
            run,
        })
    }

    /// A load from scratch (full refresh, or an empty table): the unknown
    /// member first, then the changes in chunks of whole key groups. A full
    /// refresh removes every file the table held, in the same commit.
    async fn load_all(
        &mut self,
        target: &Target,
        stream: &mut SendableRecordBatchStream,
        full_refresh: bool,
    ) -> Result<Vec<Remove>> {
        if self.spec.unknown_member {
            let unknown = unknown_member(self.layout)?;
            self.adds.extend(
                delta::write_to(
                    &target.delta,
                    self.relayout,
                    &self.spec.name,
                    &unknown,
                    self.rc.config.file_rows,
                )
                .await?,
            );
        }
        let mut chunks = KeyChunks::new(&self.spec.keys, self.rc.config.chunk_rows);
        while let Some(batch) = next_timed(stream, &mut self.run.phases.scan).await {
            if let Some(chunk) = chunks.push(batch?)? {
                self.load_chunk(&target.delta, chunk, &target.state).await?;
            }
        }
        if let Some(chunk) = chunks.finish()? {
            self.load_chunk(&target.delta, chunk, &target.state).await?;
        }
        Ok(if full_refresh {
            target.files.iter().map(|f| f.remove.clone()).collect()
        } else {
            Vec::new()
        })
    }

    /// An incremental run: merges the changes into the files holding their
    /// keys, in chunks of whole key groups as in a load, so memory follows
    /// `chunk_rows` and the files a chunk touches, not the backlog. Returns
    /// the files rewritten.
    async fn merge_all(
        &mut self,
        target: &Target,
        stream: &mut SendableRecordBatchStream,
        frame_schema: SchemaRef,
        repair: bool,
        watermark: Option<i64>,
    ) -> Result<Vec<Remove>> {
        // Executors of a cluster read Parquet files without deletion vectors.
        let marks_deletes =
            self.rc.config.deletion_vectors && !delta::session::is_clustered(self.rc.ctx);
        let mut merge = MergeState::new(target.files.clone(), repair, marks_deletes);
        let mut chunks = KeyChunks::new(&self.spec.keys, self.rc.config.chunk_rows);
        while let Some(batch) = next_timed(stream, &mut self.run.phases.scan).await {
            if let Some(chunk) = chunks.push(batch?)? {
                self.merge(
                    &target.delta,
                    &mut merge,
                    chunk,
                    &target.deletes,
                    watermark,
                    false,
                )
                .await?;
            }
        }
        // The last chunk runs even when empty: it writes what is carried
        // and repairs unknown members when only a dimension changed.
        let rest = chunks
            .finish()?
            .unwrap_or_else(|| RecordBatch::new_empty(frame_schema));
        self.merge(
            &target.delta,
            &mut merge,
            rest,
            &target.deletes,
            watermark,
            true,
        )
        .await?;
        let started = Instant::now();
        for (file, positions) in merge.take_marked() {
            let actions =
                delta::deletion::mark_deleted(&target.delta, &self.spec.name, &file, positions)
                    .await?;
            self.run.deletion_vectors += 1;
            for action in actions {
                match action {
                    LogAction::Remove(remove) => merge.removes.push(remove),
                    LogAction::Add(add) => self.adds.push(add),
                    _ => {}
                }
            }
        }
        self.run.phases.write += started.elapsed();
        Ok(merge.removes)
    }

    /// Whether the run has nothing to commit: no new bronze files and no
    /// file removed or added (dimensions changed, but no unknown member
    /// could be resolved). A full refresh always commits, to record it.
    fn nothing_to_commit(&self, window: &Window, removes: &[Remove], full_refresh: bool) -> bool {
        window.files.is_empty() && removes.is_empty() && self.adds.is_empty() && !full_refresh
    }

    /// Commits the run: side tables first (quarantine, then deletes; both
    /// replay safe), then the table's files with its watermarks and the
    /// run's counts as commit metadata. Until that last commit lands the
    /// table is as before, so a crash leaves a run to redo, not half a run.
    /// `window` is the bronze versions read, `(after, upto]`.
    async fn commit(
        self,
        delta: &mut DeltaTable,
        deletes: &mut Deletes,
        marks: &Marks,
        window: (Option<i64>, i64),
        removes: Vec<Remove>,
        full_refresh: bool,
    ) -> Result<TableRun> {
        let (after, upto) = window;
        let committing = Instant::now();
        let spec = self.spec;
        let mut run = self.run;
        run.quarantined = self.quarantine.len() as u64;
        side::quarantine(
            self.rc.ctx,
            self.rc.root,
            &spec.name,
            &spec.file,
            &self.quarantine,
            after,
            upto,
        )
        .await?;
        deletes
            .record(&self.tombstones, &self.truncates, upto, full_refresh)
            .await?;
        let txns = marks.transactions(spec, upto);
        run.expectations = spec
            .expectations
            .iter()
            .zip(&self.expectation_counts)
            .map(|(e, n)| (e.name.clone(), e.action, *n))
            .collect();
        run.files_removed = removes.len();
        run.files_added = self.adds.len();
        // The first deletion vectors turn the table's feature on (a commit
        // of its own, data unchanged), so a failed run commits nothing.
        if self.adds.iter().any(|add| add.deletion_vector.is_some()) {
            *delta = delta::deletion::enable(delta.clone(), &spec.name).await?;
        }
        let metadata = run_metadata(&run);
        let version = delta::TableCommit::new(delta::CommitMode::from_overwrite(full_refresh))
            .with_relayout(self.relayout.cloned())
            .with_removes(removes)
            .with_adds(self.adds)
            .with_transactions(txns)
            .with_metadata(metadata)
            .commit(delta, &spec.name)
            .await?;
        run.version = Some(version);
        run.phases.commit = committing.elapsed();
        Ok(run)
    }
}

impl Work<'_> {
    /// Turns shaped, sorted rows into changes: drops the truncates,
    /// resolves lookups, classifies the rows (see [`classify`]), then
    /// counts, logs and quarantines what the expectations decided.
    async fn changes(&mut self, batch: RecordBatch) -> Result<Changes> {
        self.run.rows_in += batch.num_rows() as u64;
        // Truncates are applied from `self.truncates`, not as rows.
        let truncate = batch
            .column_by_name("_is_truncate")
            .ok_or_else(|| Error::Internal("_is_truncate is missing".into()))?;
        let batch = filter_record_batch(&batch, &classify::not_truncates(truncate)?)?;
        let batch = self.resolve_lookups(batch).await?;
        let data = delta::conform(&batch, &self.layout.data_schema)?;
        let classified = classify::classify(
            &batch,
            &classify::Rules {
                keys: &self.spec.keys,
                data_schema: &self.layout.data_schema,
                lineage: &self.shaped.lineage,
                has_keep: self.shaped.has_keep,
                expectations: &self.spec.expectations,
            },
        )?;
        let verdict = classified.verdict;
        self.record_expectations(&verdict, &data)?;
        self.quarantine.extend(classify::quarantined(
            &data,
            &verdict.dropped,
            &classified.keys,
            &classified.seq,
        )?);
        Ok(Changes {
            data,
            keys: classified.keys,
            seq: classified.seq,
            kind: classified.kind,
            unavailable: classified.unavailable,
            skip: verdict.skip,
        })
    }

    /// A fact's dimension keys, resolved as of each row's event time (the
    /// time spent goes to the lookups phase); other tables pass through.
    async fn resolve_lookups(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.lookups.is_empty() {
            return Ok(batch);
        }
        let started = Instant::now();
        let resolved = lookups::resolve(
            self.rc.ctx,
            &self.spec.name,
            self.lookups,
            batch,
            &mut self.run.lookup_splits,
        )
        .await?;
        self.run.phases.lookups += started.elapsed();
        Ok(resolved)
    }

    /// Adds each checked expectation's failures to the run's counts and
    /// logs `warn` failures (their rows are kept: the counts and the log are
    /// all they leave).
    /// A `fail` rule that rows failed aborts the run before anything is
    /// committed, naming a failing row so the user can find the cause.
    fn record_expectations(&mut self, verdict: &Verdict, data: &RecordBatch) -> Result<()> {
        let spec = self.spec;
        for ((expectation, failed), count) in spec
            .expectations
            .iter()
            .zip(&verdict.failed)
            .zip(&mut self.expectation_counts)
        {
            *count += failed.len() as u64;
            if expectation.action == Action::Warn && !failed.is_empty() {
                tracing::warn!(table = %spec.name, rule = %expectation.name, rows = failed.len(), "expectation failed (warn: rows kept)");
            }
        }
        let Some(index) = verdict.abort else {
            return Ok(());
        };
        let (Some(expectation), Some(failed)) =
            (spec.expectations.get(index), verdict.failed.get(index))
        else {
            return Err(Error::Internal(format!(
                "silver table `{}`: expectation {index} aborted the run but was not checked",
                spec.name
            )));
        };
        let row = match failed.first() {
            Some(&first) => classify::row_as_json(data, first)?,
            None => String::new(),
        };
        Err(Error::Condition(format!(
            "silver table `{}`: expectation `{}` (action fail, {}) failed for {} row(s), e.g. {row}; \
             the run was aborted and nothing was committed",
            spec.name,
            expectation.name,
            spec.file.display(),
            failed.len()
        )))
    }

    fn absorb(&mut self, applied: &Applied) {
        let c = &mut self.run.counts;
        c.inserted += applied.counts.inserted;
        c.updated += applied.counts.updated;
        c.deleted += applied.counts.deleted;
        c.versions += applied.counts.versions;
        c.stale += applied.counts.stale;
        c.truncates += applied.counts.truncates;
        self.tombstones.extend(applied.tombstones.iter().cloned());
    }

    /// A chunk of a load into an empty table (whole key groups). `state` is
    /// what the deletes side table recorded: an incremental run into a table
    /// that is empty (everything deleted or truncated) must still not let a
    /// late upsert resurrect a deleted key.
    async fn load_chunk(
        &mut self,
        delta: &DeltaTable,
        batch: RecordBatch,
        state: &DeleteState,
    ) -> Result<()> {
        let changes = self.changes(batch).await?;
        let started = Instant::now();
        let existing = Existing::empty(self.layout.data_schema.clone());
        let applied = apply::apply(&self.mode, &changes, &existing, state, &self.truncates)?;
        self.absorb(&applied);
        let (data, engine) = build_batch(
            &self.layout.data_schema,
            &existing.data,
            &changes.data,
            &applied.rows,
        )?;
        let rows = sort_by_keys(&self.layout.assemble(&data, &engine)?, &self.spec.keys)?;
        self.run.phases.apply += started.elapsed();
        let started = Instant::now();
        self.adds.extend(
            delta::write_to(
                delta,
                self.relayout,
                &self.spec.name,
                &rows,
                self.rc.config.file_rows,
            )
            .await?,
        );
        self.run.phases.write += started.elapsed();
        Ok(())
    }

    /// A chunk of an incremental run: read the files that may hold its
    /// keys, apply, rewrite the files that changed (see [`MergeState`]).
    /// Truncates and repairs read every file (with unknown members) in the
    /// first chunk; `last` writes the rows carried so far.
    async fn merge(
        &mut self,
        delta: &DeltaTable,
        merge: &mut MergeState,
        batch: RecordBatch,
        deletes: &Deletes,
        watermark: Option<i64>,
        last: bool,
    ) -> Result<()> {
        let ctx = self.rc.ctx;
        let first = std::mem::replace(&mut merge.first, false);
        let repair = merge.repair && first;
        let files = &merge.files;
        let bound = if last {
            None
        } else {
            merge::last_key(&batch, &self.spec.keys)?
        };
        let changes = self.changes(batch).await?;
        let first_key = &self.spec.keys[0];
        let values = KeyValues::from_array(
            changes
                .data
                .column_by_name(first_key)
                .ok_or_else(|| Error::Internal(format!("{first_key} is missing")))?
                .as_ref(),
        )?;
        // Truncates and repairs concern every held row, not just the keys.
        let all_rows = (first && !self.truncates.is_empty()) || repair;
        let mut selected: Vec<usize> = if first && !self.truncates.is_empty() {
            (0..files.len()).collect()
        } else if changes.data.num_rows() == 0 {
            Vec::new()
        } else {
            delta::candidates(files, first_key, &values)
        };
        if repair {
            for (i, file) in files.iter().enumerate() {
                if has_unknown(file, &self.layout.lookup_keys) && !selected.contains(&i) {
                    selected.push(i);
                }
            }
        }
        selected.sort_unstable();
        let started = Instant::now();
        let chosen: Vec<TableFile> = selected.iter().map(|i| files[*i].clone()).collect();
        let delta::FileRows {
            rows,
            file_of_row,
            position_of_row,
        } = delta::read_files(
            ctx,
            delta,
            &self.spec.name,
            &chosen.iter().collect::<Vec<_>>(),
            &self.layout.table_schema,
        )
        .await?;
        // Rows an earlier chunk marked deleted are gone already (their new
        // versions were written or carried).
        let (rows, mut file_of_row, mut position_of_row) = if merge.has_any_marked() {
            let keep: arrow::array::BooleanArray = (0..rows.num_rows())
                .map(|i| Some(!merge.is_marked(&chosen[file_of_row[i]].path, position_of_row[i])))
                .collect();
            select_rows(&rows, &file_of_row, &position_of_row, &keep)?
        } else {
            (rows, file_of_row, position_of_row)
        };
        // Carried rows come from files already retired: a pseudo file
        // (index `chosen.len()`) that is always written.
        let carried_file = chosen.len();
        let mut dirty: HashSet<usize> = HashSet::new();
        let rows = match merge.carried.take() {
            Some(carried) if carried.num_rows() > 0 => {
                dirty.insert(carried_file);
                let mut index = vec![carried_file; carried.num_rows()];
                index.append(&mut file_of_row);
                file_of_row = index;
                let mut positions = vec![0; carried.num_rows()];
                positions.append(&mut position_of_row);
                position_of_row = positions;
                concat_batches(&self.layout.table_schema, &[carried, rows])?
            }
            _ => rows,
        };
        // Only the rows of the chunk's keys (and carried rows) are applied;
        // the others of a file stay in it, or are copied as they are when
        // the file is rewritten.
        let mut live_per_file = vec![0usize; chosen.len() + 1];
        for &file in &file_of_row {
            live_per_file[file] += 1;
        }
        let held = if all_rows {
            None
        } else {
            let keys = rows
                .column_by_name(first_key)
                .ok_or_else(|| Error::Internal(format!("{first_key} is missing")))?;
            values.mask(keys.as_ref())?.map(|mask| {
                mask.iter()
                    .zip(&file_of_row)
                    .map(|(m, file)| Some(m == Some(true) || *file == carried_file))
                    .collect::<arrow::array::BooleanArray>()
            })
        };
        let (existing_rows, existing_file, existing_position) = match &held {
            Some(mask) => select_rows(&rows, &file_of_row, &position_of_row, mask)?,
            None => (rows.clone(), file_of_row.clone(), position_of_row.clone()),
        };
        let mut existing = self.layout.existing(&existing_rows, existing_file)?;
        self.run.phases.read += started.elapsed();
        let mut replaced: Vec<usize> = Vec::new();
        if repair {
            let started = Instant::now();
            replaced.extend(self.repair(&mut existing).await?);
            self.run.phases.lookups += started.elapsed();
        }
        // The recorded deletes of this chunk's keys (and truncates), and of
        // the held keys when truncates apply to them.
        let mut state_keys = changes.keys.clone();
        if !self.truncates.is_empty() {
            state_keys.extend(existing.keys.iter().cloned());
        }
        let started = Instant::now();
        let state = deletes.load_keys(ctx, watermark, &state_keys).await?;
        self.run.phases.read += started.elapsed();
        let started = Instant::now();
        let applied = apply::apply(&self.mode, &changes, &existing, &state, &self.truncates)?;
        self.absorb(&applied);
        replaced.extend_from_slice(&applied.replaced_rows);
        let marked = Self::choose_rewrites(
            merge,
            &chosen,
            &existing.file,
            &existing_position,
            &live_per_file,
            &replaced,
            &mut dirty,
        );
        let out_rows: Vec<OutRow> = applied
            .rows
            .into_iter()
            .filter(|r| {
                let (source, index) = r.row.base();
                source != EXISTING
                    || dirty.contains(&existing.file[index])
                    || marked.contains(&index)
            })
            .collect();
        // Even with nothing to rewrite, the last chunk writes what earlier
        // chunks held back.
        let (data, engine) = build_batch(
            &self.layout.data_schema,
            &existing.data,
            &changes.data,
            &out_rows,
        )?;
        let mut out = self.layout.assemble(&data, &engine)?;
        if let Some(mask) = &held {
            // The other rows of rewritten files, unchanged.
            let copied: arrow::array::BooleanArray = (0..rows.num_rows())
                .map(|i| Some(!mask.value(i) && dirty.contains(&file_of_row[i])))
                .collect();
            if copied.true_count() > 0 {
                let copied = filter_record_batch(&rows, &copied)?;
                out = concat_batches(&self.layout.table_schema, &[out, copied])?;
            }
        }
        let out = sort_by_keys(&out, &self.spec.keys)?;
        let out = match &bound {
            Some(bound) => {
                let (now, later) = merge::split_at_key(&out, &self.spec.keys, bound)?;
                merge.carried = Some(later);
                now
            }
            None => out,
        };
        let out = merge.ready_to_write(out, self.rc.config.file_rows, last)?;
        self.run.phases.apply += started.elapsed();
        let started = Instant::now();
        self.adds.extend(
            delta::write_to(
                delta,
                self.relayout,
                &self.spec.name,
                &out,
                self.rc.config.file_rows,
            )
            .await?,
        );
        self.run.phases.write += started.elapsed();
        let mut dirty: Vec<usize> = dirty.into_iter().filter(|i| *i < carried_file).collect();
        dirty.sort_unstable();
        let retired: Vec<TableFile> = dirty.into_iter().map(|i| chosen[i].clone()).collect();
        merge.retire(&retired);
        Ok(())
    }

    /// Decides, per file holding a replaced row (`live_per_file`: the
    /// file's rows read), whether the file is
    /// rewritten (added to `dirty`) or keeps its other rows and has the
    /// replaced ones marked deleted (see [`crate::delta::deletion`]): marked
    /// when deletion vectors are on and the replaced rows are at most half
    /// the file's live rows, or when an earlier chunk already marked rows
    /// of it (a rewrite would bring those back). Returns the replaced rows
    /// of marked files, which are written again with their key's new rows.
    fn choose_rewrites(
        merge: &mut MergeState,
        chosen: &[TableFile],
        file_of_row: &[usize],
        position_of_row: &[u64],
        live_per_file: &[usize],
        replaced: &[usize],
        dirty: &mut HashSet<usize>,
    ) -> HashSet<usize> {
        let mut replaced_per_file: std::collections::BTreeMap<usize, Vec<usize>> =
            Default::default();
        for &row in replaced {
            replaced_per_file
                .entry(file_of_row[row])
                .or_default()
                .push(row);
        }
        let mut marked = HashSet::new();
        for (file, rows) in replaced_per_file {
            let Some(table_file) = chosen.get(file) else {
                // The carried rows' pseudo file is always written.
                continue;
            };
            let mark = merge.marks_deletes()
                && (merge.has_marked(&table_file.path) || rows.len() * 2 <= live_per_file[file]);
            if mark {
                merge.mark(table_file, rows.iter().map(|&row| position_of_row[row]));
                marked.extend(rows);
            } else {
                dirty.insert(file);
            }
        }
        marked
    }

    /// Re-resolves the lookups of held fact rows that point at an unknown member.
    /// Returns the rows repaired (replaced by their resolved versions).
    async fn repair(&mut self, existing: &mut Existing) -> Result<Vec<usize>> {
        let n = existing.data.num_rows();
        let mut unresolved = Vec::new();
        for i in 0..n {
            let mut unknown = false;
            for key in &self.layout.lookup_keys {
                if let Some(column) = existing.data.column_by_name(key) {
                    let column = arrow::compute::cast(column, &DataType::Int64)?;
                    let column = column.as_primitive::<Int64Type>();
                    unknown |= column.is_valid(i) && column.value(i) == UNKNOWN;
                }
            }
            if unknown {
                unresolved.push(i as u32);
            }
        }
        if unresolved.is_empty() {
            return Ok(Vec::new());
        }
        let rows = take_record_batch(&existing.data, &UInt32Array::from(unresolved.clone()))?;
        // Strip the old lookup columns; resolve again from the SQL columns.
        let base = delta::conform(&rows, &self.shaped.data_schema)?;
        let resolved = lookups::resolve(
            self.rc.ctx,
            &self.spec.name,
            self.lookups,
            base,
            &mut self.run.lookup_splits,
        )
        .await?;
        let resolved = delta::conform(&resolved, &self.layout.data_schema)?;
        let mut changed = Vec::new();
        for (j, &i) in unresolved.iter().enumerate() {
            let mut better = false;
            for key in &self.layout.lookup_keys {
                if let Some(column) = resolved.column_by_name(key) {
                    let column = arrow::compute::cast(column, &DataType::Int64)?;
                    let column = column.as_primitive::<Int64Type>();
                    better |= column.is_valid(j) && column.value(j) != UNKNOWN;
                }
            }
            if better {
                changed.push((i as usize, j));
            }
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        // Replace the repaired rows' cells.
        let mut indices: Vec<(usize, usize)> = (0..n).map(|i| (0, i)).collect();
        for (i, j) in &changed {
            indices[*i] = (1, *j);
        }
        let mut columns = Vec::new();
        for index in 0..existing.data.num_columns() {
            let sources: [&dyn Array; 2] = [
                existing.data.column(index).as_ref(),
                resolved.column(index).as_ref(),
            ];
            columns.push(arrow::compute::interleave(&sources, &indices)?);
        }
        existing.data = RecordBatch::try_new(existing.data.schema(), columns)?;
        self.run.repaired += changed.len() as u64;
        Ok(changed.into_iter().map(|(i, _)| i).collect())
    }
}

/// The rows of `rows` that `mask` keeps, with their files and positions.
fn select_rows(
    rows: &RecordBatch,
    file_of_row: &[usize],
    position_of_row: &[u64],
    mask: &arrow::array::BooleanArray,
) -> Result<(RecordBatch, Vec<usize>, Vec<u64>)> {
    let kept: Vec<usize> = (0..rows.num_rows()).filter(|&i| mask.value(i)).collect();
    Ok((
        filter_record_batch(rows, mask)?,
        kept.iter().map(|&i| file_of_row[i]).collect(),
        kept.iter().map(|&i| position_of_row[i]).collect(),
    ))
}

fn has_unknown(file: &TableFile, lookup_keys: &[String]) -> bool {
    let Some(stats) = &file.stats else {
        return true;
    };
    lookup_keys.iter().any(|key| {
        stats
            .get("minValues")
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_i64())
            .is_none_or(|min| min <= UNKNOWN)
    })
}

/// Sorts table rows by their keys, so files cover narrow key ranges.
fn sort_by_keys(batch: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    if batch.num_rows() <= 1 {
        return Ok(batch.clone());
    }
    let columns: Vec<arrow::compute::SortColumn> = keys
        .iter()
        .filter_map(|k| batch.column_by_name(k))
        .map(|c| arrow::compute::SortColumn {
            values: c.clone(),
            options: None,
        })
        .collect();
    let indices = arrow::compute::lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}
