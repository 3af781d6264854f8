//! Distributed execution of silver's and gold's SQL on an Apache DataFusion
//! Ballista cluster (`[engine] mode = "ballista"`).
//!
//! The engine still plans every query and commits every result itself. A
//! session bound to a cluster ([`Engine::Ballista`]) carries a [`Cluster`]
//! in its configuration; [`super::session::execute_stream`] sends the
//! heavy queries there: silver's scan, shaping and sort of the new changes,
//! its dimension lookups, and gold's mart queries. The scheduler plans
//! them into stages, the executors scan the Parquet files and run the
//! joins, sorts and aggregates, and the result streams back to this
//! process, which applies and commits it exactly as in local mode. The
//! commit protocol (watermarks in the Delta log, atomic commits, conflict
//! refusal) never leaves this process, so a cluster failure fails the query
//! before anything is written, and the rerun starts from the last commit.
//!
//! What crosses the wire must be serializable, so in a bound session:
//! - a Delta table is read through [`scan::files_table`]: DataFusion's
//!   Parquet listing table over exactly the files of the loaded snapshot,
//!   partition values from the log (what executors need, and nothing they
//!   would have to learn from the Delta log themselves);
//! - an in-memory table (a chunk's rows being looked up, gold's changed
//!   keys, the system tables) travels inside the plan as Arrow IPC
//!   ([`codec::LakehouseCodec`]).
//!
//! The scheduler and executor processes are `lakehouse-scheduler` and
//! `lakehouse-executor` (the `cluster/` crate): Ballista's own, plus this
//! codec, the SQL functions the engine registers ([`cluster_session_state`])
//! and the lake's object store.

pub mod codec;
pub mod rules;
pub mod scan;

use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::{
    SessionConfigExt, SessionStateExt, ballista_aggregate_functions, ballista_scalar_functions,
    ballista_window_functions,
};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SessionConfig};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::error::{Error, Result};

pub use codec::LakehouseCodec;

/// Where silver and gold run their SQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    /// In this process (the default).
    #[default]
    Local,
    /// On the Ballista cluster of `[engine] ballista.scheduler`.
    Ballista,
}

/// `[engine]`: where silver and gold run their SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// `local` or `ballista`.
    pub mode: EngineMode,
    /// The cluster, used when `mode = "ballista"`.
    pub ballista: BallistaSettings,
}

/// `[engine.ballista]`: the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BallistaSettings {
    /// The scheduler, `df://host:port` (Ballista's URL form).
    pub scheduler: String,
    /// Largest gRPC message to or from the cluster, in bytes: a plan carries
    /// the in-memory tables it reads (a lookup chunk's rows), so this bounds
    /// them. The scheduler's `--grpc-server-max-decoding-message-size` must
    /// be at least as large (`lakehouse-scheduler` defaults to 256 MiB).
    pub max_message_size: usize,
    /// A query still running after this many seconds fails the run (0: no
    /// limit), so a stalled cluster cannot hang a scheduled pipeline.
    pub query_timeout_secs: u64,
}

/// Default of [`BallistaSettings::query_timeout_secs`]: an hour.
pub const DEFAULT_QUERY_TIMEOUT_SECS: u64 = 3600;

/// Default of [`BallistaSettings::max_message_size`].
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

impl Default for BallistaSettings {
    fn default() -> Self {
        Self {
            scheduler: "df://127.0.0.1:50050".into(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            query_timeout_secs: DEFAULT_QUERY_TIMEOUT_SECS,
        }
    }
}

/// The engine a run's sessions use, from [`EngineConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// In this process.
    #[default]
    Local,
    /// On a Ballista cluster.
    Ballista(ClusterTarget),
}

/// The cluster an [`Engine::Ballista`] runs on, as a client reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// The scheduler's gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// See [`BallistaSettings::max_message_size`].
    pub max_message_size: usize,
    /// See [`BallistaSettings::query_timeout_secs`] (`None`: no limit).
    pub query_timeout: Option<Duration>,
}

impl Engine {
    /// The engine `config` asks for; a scheduler URL that is not
    /// `df://host[:port]` is an error naming the key.
    pub fn from_config(config: &EngineConfig) -> Result<Self> {
        match config.mode {
            EngineMode::Local => Ok(Engine::Local),
            EngineMode::Ballista => Ok(Engine::Ballista(ClusterTarget {
                endpoint: scheduler_endpoint(&config.ballista.scheduler)?,
                max_message_size: config.ballista.max_message_size,
                query_timeout: (config.ballista.query_timeout_secs > 0)
                    .then(|| Duration::from_secs(config.ballista.query_timeout_secs)),
            })),
        }
    }
}

/// Ballista's default scheduler port.
const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// `df://host:port` as the gRPC endpoint `http://host:port`.
fn scheduler_endpoint(url: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::Condition(format!(
            "[engine] ballista.scheduler: `{url}` {why} (expected df://host:port)"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if parsed.scheme() != "df" {
        return Err(bad("does not use the df:// scheme"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("has no host"))?;
    let port = parsed.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
    Ok(format!("http://{host}:{port}"))
}

/// A connection to a Ballista scheduler: the client session that turns a
/// logical plan into a distributed job and streams its result back.
/// Attached to a session's configuration as an extension, which is how
/// [`super::session`] knows to send that session's heavy queries here.
#[derive(Debug)]
pub struct Cluster {
    state: SessionState,
    target: ClusterTarget,
}

impl Cluster {
    /// A client of the scheduler of `target`, sending `config`'s settings
    /// (batch size, string types, ...) with every job so executors run the
    /// SQL as this process would.
    pub fn new(
        target: &ClusterTarget,
        config: &SessionConfig,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Self> {
        // Ballista's settings for distributed plans first (no round-robin
        // repartitions, scalar subqueries as joins, sort-merge joins that
        // spill, broadcast thresholds): they are applied once, to a config
        // that has no Ballista extension yet, so before any of ours.
        let mut config = config.clone().upgrade_for_ballista();
        // Ballista 55's adaptive planner re-optimizes the rest of a job as
        // its stages finish. On lakehouse's plans it hung jobs: a join
        // selection that swaps a hash join's inputs after its dynamic filter
        // exists (DataFusion refuses, the task's status update fails), and
        // stages it wants cancelled but cannot cancel. The static planner
        // runs every plan; dynamic filters only prune earlier (same rows
        // without them) and are left off for the same reason.
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.enable_dynamic_filter_pushdown = false;
        optimizer.enable_join_dynamic_filter_pushdown = false;
        optimizer.enable_topk_dynamic_filter_pushdown = false;
        optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        let config = config
            .with_ballista_logical_extension_codec(Arc::new(LakehouseCodec::default()))
            .with_ballista_grpc_client_max_message_size(target.max_message_size)
            .with_ballista_adaptive_query_planner(false)
            .with_ballista_job_name("lakehouse");
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime)
            .build()
            .upgrade_for_ballista(target.endpoint.clone())?;
        Ok(Self {
            state,
            target: target.clone(),
        })
    }

    /// Runs `plan` (planned in a local session over serializable tables) on
    /// the cluster and streams its result.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        let frame = DataFrame::new(self.state.clone(), inline_views(plan)?);
        let context = format!("on the Ballista cluster at {}", self.target.endpoint);
        let stream = frame
            .execute_stream()
            .await
            .map_err(|e| e.context(context.clone()))?;
        // The job runs while the stream is read: its failure arrives there.
        let schema = stream.schema();
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map_err(move |e| e.context(context.clone())),
        ));
        Ok(match self.target.query_timeout {
            Some(timeout) => with_deadline(stream, timeout, &self.target.endpoint),
            None => stream,
        })
    }
}

/// `stream`, ending with an error once `timeout` has passed: a job the
/// cluster never finishes (an executor lost with no retry left, a stalled
/// scheduler) fails the run instead of hanging it. Dropping the stream
/// drops the client's side of the job.
fn with_deadline(
    stream: SendableRecordBatchStream,
    timeout: Duration,
    endpoint: &str,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let deadline = tokio::time::Instant::now() + timeout;
    let message = format!(
        "the query did not finish within {} s on the Ballista cluster at {endpoint} \
         ([engine] ballista.query_timeout_secs)",
        timeout.as_secs_f64()
    );
    let limited = futures::stream::unfold(Some(stream), move |state| {
        let message = message.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(_) => Some((Err(DataFusionError::Execution(message)), None)),
            }
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, limited))
}

impl Cluster {
    /// The cluster this client sends its queries to.
    pub fn target(&self) -> &ClusterTarget {
        &self.target
    }
}

/// `plan` with every view (a scan of a table defined by a plan: the source
/// views of silver, a partitioned Delta table's union of listings) replaced
/// by its plan under the view's name, so only the tables underneath travel.
/// The plan is unoptimized, so no scan has a projection or filters pushed
/// into it yet, and the alias keeps every column reference valid.
fn inline_views(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut plan = plan;
    loop {
        let inlined = plan.transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(view) = scan.source.get_logical_plan() else {
                return Ok(Transformed::no(node));
            };
            if scan.projection.is_some() || !scan.filters.is_empty() || scan.fetch.is_some() {
                return Err(datafusion::error::DataFusionError::Internal(format!(
                    "view `{}` was already optimized when sent to the cluster",
                    scan.table_name
                )));
            }
            let alias = scan.table_name.clone();
            let inlined = LogicalPlanBuilder::from(view.into_owned())
                .alias(alias)?
                .build()?;
            Ok(Transformed::yes(inlined))
        })?;
        if !inlined.transformed {
            return Ok(inlined.data);
        }
        plan = inlined.data;
    }
}

/// The session state a scheduler or executor plans and runs lakehouse's
/// SQL with: DataFusion's and Ballista's functions plus the JSON functions
/// the engine registers, over `runtime` (which holds the lake's object
/// store), with the rules of [`rules`] that keep plans right once cut
/// into stages.
pub fn cluster_session_state(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_runtime_env(runtime)
        .with_config(config)
        .with_default_features()
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .with_physical_optimizer_rule(Arc::new(rules::SortWindowInputs))
        .with_physical_optimizer_rule(Arc::new(rules::SingleProbeForBuildSideJoins))
        .build();
    datafusion_functions_json::register_all(&mut state)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_url_becomes_its_grpc_endpoint() {
        assert_eq!(
            scheduler_endpoint("df://10.0.0.5:50055").unwrap(),
            "http://10.0.0.5:50055"
        );
        assert_eq!(
            scheduler_endpoint("df://scheduler").unwrap(),
            "http://scheduler:50050"
        );
        for bad in ["http://h:1", "df:nohost", "not a url"] {
            let err = scheduler_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains("ballista.scheduler"), "{err}");
            assert!(err.contains(bad), "{err}");
        }
    }

    #[tokio::test]
    async fn views_are_inlined_down_to_the_tables_under_them() {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::MemTable;
        use datafusion::prelude::SessionContext;

        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        ctx.register_table(
            "base",
            Arc::new(MemTable::try_new(schema, vec![vec![rows]]).unwrap()),
        )
        .unwrap();
        let inner = ctx.sql("SELECT id * 10 AS v FROM base").await.unwrap();
        ctx.register_table("inner_view", inner.into_view()).unwrap();
        let outer = ctx
            .sql("SELECT v + 1 AS w FROM inner_view WHERE v > 10")
            .await
            .unwrap();
        ctx.register_table("outer_view", outer.into_view()).unwrap();
        let frame = ctx
            .sql("SELECT outer_view.w FROM outer_view ORDER BY outer_view.w")
            .await
            .unwrap();
        let plan = inline_views(frame.into_unoptimized_plan()).unwrap();
        let mut scans = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                assert!(scan.source.get_logical_plan().is_none(), "{scan:?}");
                scans.push(scan.table_name.to_string());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        assert_eq!(scans, vec!["base"]);
        let result = DataFrame::new(ctx.state(), plan).collect().await.unwrap();
        let values: Vec<i64> = result
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, vec![21, 31]);
    }

    #[tokio::test]
    async fn a_query_past_its_deadline_fails_naming_the_setting() {
        use datafusion::arrow::datatypes::Schema;
        let schema = Arc::new(Schema::empty());
        let never: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::pending(),
        ));
        let mut limited = with_deadline(never, Duration::from_millis(50), "http://s:1");
        let err = limited.next().await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("query_timeout_secs") && err.contains("http://s:1"),
            "{err}"
        );
        assert!(
            limited.next().await.is_none(),
            "the stream ends after its error"
        );
        // A stream that finishes in time passes through.
        let empty: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::empty(),
        ));
        let mut limited = with_deadline(empty, Duration::from_secs(60), "http://s:1");
        assert!(limited.next().await.is_none());
    }

    #[test]
    fn the_client_sends_ballistas_settings_for_distributed_plans() {
        let target = ClusterTarget {
            endpoint: "http://127.0.0.1:1".into(),
            max_message_size: 1 << 20,
            query_timeout: None,
        };
        let ours = SessionConfig::new().with_batch_size(1234);
        let cluster = Cluster::new(&target, &ours, Arc::new(RuntimeEnv::default())).unwrap();
        let options = cluster.state.config().options();
        // Ballista's: scalar subqueries as joins (its executors cannot decode
        // the physical ones), no round-robin repartitions.
        assert!(
            !options
                .optimizer
                .enable_physical_uncorrelated_scalar_subquery
        );
        assert!(!options.optimizer.enable_round_robin_repartition);
        // Ours, on top.
        assert_eq!(cluster.state.config().batch_size(), 1234);
        assert!(!options.optimizer.enable_dynamic_filter_pushdown);
        assert!(
            !cluster
                .state
                .config()
                .ballista_config()
                .adaptive_query_planner_enabled()
        );
    }

    #[test]
    fn local_is_the_default_engine() {
        assert_eq!(
            Engine::from_config(&EngineConfig::default()).unwrap(),
            Engine::Local
        );
        let config = EngineConfig {
            mode: EngineMode::Ballista,
            ballista: BallistaSettings::default(),
        };
        assert_eq!(
            Engine::from_config(&config).unwrap(),
            Engine::Ballista(ClusterTarget {
                endpoint: "http://127.0.0.1:50050".into(),
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                query_timeout: Some(Duration::from_secs(DEFAULT_QUERY_TIMEOUT_SECS)),
            })
        );
    }
}
