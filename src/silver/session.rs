//! The DataFusion session a silver run plans and executes in.

use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::config::SilverConfig;
use crate::error::Result;

/// A session whose memory is bounded by `[silver] memory_limit`: sorts and
/// windows spill to disk beyond it instead of growing without bound.
pub fn new_session(config: &SilverConfig) -> Result<SessionContext> {
    let disk = match &config.spill_dir {
        Some(dir) => {
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![dir.clone()]))
        }
        None => DiskManagerBuilder::default(),
    };
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit)))
        .with_disk_manager_builder(disk)
        .build_arc()?;
    let mut session_config = SessionConfig::new()
        .with_batch_size(8192)
        .with_information_schema(true);
    // Plain Utf8 everywhere: the silver tables' Delta schemas use `string`,
    // and view types would make the SQL's output schema differ run to run.
    let options = session_config.options_mut();
    options.sql_parser.map_string_types_to_utf8view = false;
    options.execution.parquet.schema_force_view_types = false;
    let mut ctx = SessionContext::new_with_config_rt(session_config, runtime);
    datafusion_functions_json::register_all(&mut ctx)?;
    Ok(ctx)
}
