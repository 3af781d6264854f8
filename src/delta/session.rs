//! DataFusion sessions over the Delta tables: one builder for silver, gold
//! and `lakehouse query`, with memory bounded by a pool that spills to disk.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::DataFrame;
use deltalake::DeltaTable;
use futures::TryStreamExt;

use super::cluster::{Cluster, Engine};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// The memory and spill settings of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Bytes of the memory pool: sorts, joins and windows spill beyond it.
    pub memory_limit: usize,
    /// Where spills go (default: the system temporary folder).
    pub spill_dir: Option<std::path::PathBuf>,
}

/// Memory consumers named when the pool refuses an allocation.
const TOP_CONSUMERS: NonZeroUsize = NonZeroUsize::new(5).unwrap();

/// DataFusion's default merge reservation of a sort that spills.
const SORT_SPILL_RESERVATION: usize = 10 * 1024 * 1024;

/// A session whose memory is bounded by `limits.memory_limit`: sorts and
/// windows spill to disk beyond it instead of growing without bound.
pub fn new_session(limits: &SessionLimits) -> Result<SessionContext> {
    session_with_pool(limits, limits.memory_limit, &Engine::Local)
}

/// [`new_session`] whose heavy queries ([`execute_stream`]) run on `engine`.
pub fn new_session_on(limits: &SessionLimits, engine: &Engine) -> Result<SessionContext> {
    session_with_pool(limits, limits.memory_limit, engine)
}

/// The sessions of a silver run, splitting `memory_limit` in two so the
/// two never starve each other: a table's sorted changes are read as a
/// stream while its chunks run lookups and reads, and a sort holding its
/// merge reservations would otherwise leave the chunk's joins nothing.
pub struct RunSessions {
    /// Lookups, reads of silver files, side tables: half the pool.
    pub work: SessionContext,
    /// Reading, shaping and sorting the new changes: the other half.
    pub scan: SessionState,
}

impl RunSessions {
    /// Both sessions; they share object stores, registrations, settings
    /// and the engine their heavy queries run on.
    pub fn new(limits: &SessionLimits, engine: &Engine) -> Result<Self> {
        let half = limits.memory_limit / 2;
        let work = session_with_pool(limits, half, engine)?;
        let scan_runtime = runtime(limits, half, Some(work.runtime_env().as_ref()))?;
        // One sort over all partitions rather than a sort per partition
        // merged by a SortPreservingMergeExec: that merge's reservation
        // cannot spill, and with the per-partition sorts holding their
        // fair share of a small pool it had none left (runs failed with
        // ResourcesExhausted). The shaping SQL still runs in parallel.
        let mut scan_config = work.copied_config();
        scan_config.options_mut().optimizer.repartition_sorts = false;
        let scan = SessionStateBuilder::new_from_existing(work.state())
            .with_config(scan_config)
            .with_runtime_env(scan_runtime)
            .build();
        Ok(Self { work, scan })
    }
}

/// A runtime with a pool of `pool_bytes`, spilling into `[silver]
/// spill_dir`; `objects_of` shares another runtime's object stores.
fn runtime(
    limits: &SessionLimits,
    pool_bytes: usize,
    objects_of: Option<&RuntimeEnv>,
) -> Result<Arc<RuntimeEnv>> {
    let disk = match &limits.spill_dir {
        Some(dir) => {
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![dir.clone()]))
        }
        None => DiskManagerBuilder::default(),
    };
    let mut builder = RuntimeEnvBuilder::new()
        // A refusal names the biggest consumers: what to tune.
        .with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(pool_bytes),
            TOP_CONSUMERS,
        )))
        .with_disk_manager_builder(disk);
    if let Some(other) = objects_of {
        builder = builder.with_object_store_registry(other.object_store_registry.clone());
    }
    Ok(builder.build_arc()?)
}

fn session_with_pool(
    limits: &SessionLimits,
    pool_bytes: usize,
    engine: &Engine,
) -> Result<SessionContext> {
    let mut session_config = SessionConfig::new()
        .with_batch_size(8192)
        .with_information_schema(true);
    let options = session_config.options_mut();
    // Plain Utf8 everywhere: the silver tables' Delta schemas use `string`,
    // and view types would make the SQL's output schema differ run to run.
    options.sql_parser.map_string_types_to_utf8view = false;
    options.execution.parquet.schema_force_view_types = false;
    // Every sort first reserves this much for merging what it spills;
    // DataFusion's 10 MiB would not fit a small pool at all, and a lookup
    // runs several sorts at once (the as-of windows, per partition), so it
    // scales down with the pool.
    options.execution.sort_spill_reservation_bytes =
        SORT_SPILL_RESERVATION.min(pool_bytes / (16 * options.execution.target_partitions.max(1)));
    let runtime = runtime(limits, pool_bytes, None)?;
    if let Engine::Ballista(target) = engine {
        let cluster = Cluster::new(target, &session_config, runtime.clone())?;
        session_config = session_config.with_extension(Arc::new(cluster));
    }
    let mut ctx = SessionContext::new_with_config_rt(session_config, runtime);
    datafusion_functions_json::register_all(&mut ctx)?;
    Ok(ctx)
}

/// The cluster `state`'s heavy queries run on, if any.
fn cluster_of(config: &SessionConfig) -> Option<Arc<Cluster>> {
    config.get_extension::<Cluster>()
}

/// `ctx` scanning in one partition: each file's rows arrive in the order
/// written, which row positions (deletion vectors) rely on. (With more
/// partitions deltalake's scan splits a file's row groups across them, and
/// collecting interleaves their batches.)
pub fn ordered_session(ctx: &SessionContext) -> SessionContext {
    // A copy of the state, not a rebuilt one: building a state registers a
    // fresh default catalog, which would drop `ctx`'s registered tables.
    let mut state = ctx.state();
    let options = state.config_mut().options_mut();
    options.execution.target_partitions = 1;
    options.optimizer.repartition_file_scans = false;
    SessionContext::new_with_state(state)
}

/// Whether `ctx`'s heavy queries run on a cluster.
pub fn is_clustered(ctx: &SessionContext) -> bool {
    cluster_of(ctx.state().config()).is_some()
}

/// Starts `frame`: on the cluster its session is bound to, else here.
pub async fn execute_stream(frame: DataFrame) -> Result<SendableRecordBatchStream> {
    match cluster_of(frame.task_ctx().session_config()) {
        Some(cluster) => cluster.execute(frame.into_unoptimized_plan()).await,
        None => Ok(frame.execute_stream().await?),
    }
}

/// Runs `frame` as [`execute_stream`] does and collects its batches.
pub async fn collect_frame(frame: DataFrame) -> Result<Vec<RecordBatch>> {
    Ok(execute_stream(frame).await?.try_collect().await?)
}

/// Delta table `table` (`name` in errors) as `ctx` reads it: deltalake's
/// provider, or, when `ctx`'s heavy queries run on a cluster, the same
/// rows as a plan executors can scan ([`super::cluster::scan`]).
pub async fn table_provider(
    ctx: &SessionContext,
    table: &DeltaTable,
    name: &str,
) -> Result<Arc<dyn TableProvider>> {
    let state = ctx.state();
    table
        .update_datafusion_session(&state)
        .map_err(|e| Error::delta(name, e))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| Error::delta(name, deltalake::DeltaTableError::from(e)))?;
    match cluster_of(state.config()) {
        Some(_) => super::cluster::scan::files_table(&state, table, name, provider.schema()).await,
        None => Ok(provider),
    }
}

/// Registers table `name` of `layer` in `ctx` under its own name. Returns
/// `false` (and registers nothing) when the table does not exist yet.
pub async fn register_table(
    ctx: &SessionContext,
    root: &StorageRoot,
    layer: &str,
    name: &str,
) -> Result<bool> {
    let table = root.open_table(layer, name).await?;
    if table.version().is_none() {
        return Ok(false);
    }
    let provider = table_provider(ctx, &table, name).await?;
    ctx.register_table(name, provider)?;
    Ok(true)
}

/// Runs `sql` and collects the result.
pub async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}
