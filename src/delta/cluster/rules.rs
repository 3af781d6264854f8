//! Physical optimizer rules of the cluster's scheduler: plans that are
//! right in one process but not once Ballista cuts them into stages whose
//! partitions run as separate tasks. Both rules run last, on the plan the
//! scheduler is about to distribute.
//!
//! - [`SortWindowInputs`]: DataFusion leaves out a window's input sort when
//!   its partition columns are constant there (a gold mart rebuilding one
//!   date filters `payment_date = '2024-01-01'`, so `PARTITION BY
//!   payment_date` is trivially sorted). Ballista cuts the plan at the
//!   repartition under the window, and the shuffle reader that replaces it
//!   on an executor knows nothing of those constants: the window finds its
//!   input unsorted and fails the job ("All partition by columns should
//!   have an ordering"). Sorting a constant column costs one comparison per
//!   row; the rule adds the sort wherever a window's required ordering is
//!   not literally its input's.
//! - [`SingleProbeForBuildSideJoins`]: a join that collects its left side
//!   whole (a `CollectLeft` hash join, a nested loop join) and must emit
//!   left rows nobody matched (LEFT, FULL, semi, anti and mark joins) emits
//!   them once the last probe partition is done, counted in the one shared
//!   left side. On the cluster each probe partition is a task with a left
//!   side of its own that never sees the others finish, so those rows were
//!   never emitted: `pipeline_health` lost its tables without a quarantine.
//!   The rule gives such a join a single probe partition, so one task sees
//!   every probe row; the left side is small (that is why it was collected).

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::{LexOrdering, OrderingRequirements};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

/// Windows get their input sort back (see the module documentation).
#[derive(Debug, Default)]
pub struct SortWindowInputs;

impl PhysicalOptimizerRule for SortWindowInputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        replace_children_where(plan, sorted_window_input)
    }

    fn name(&self) -> &str {
        "lakehouse_sort_window_inputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Joins that emit unmatched left rows get one probe partition (see the
/// module documentation).
#[derive(Debug, Default)]
pub struct SingleProbeForBuildSideJoins;

impl PhysicalOptimizerRule for SingleProbeForBuildSideJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        replace_children_where(plan, single_probe_join_inputs)
    }

    fn name(&self) -> &str {
        "lakehouse_single_probe_for_build_side_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan`, bottom up, with each node for which `new_children` has children
/// given those instead (its properties recomputed over them).
fn replace_children_where(
    plan: Arc<dyn ExecutionPlan>,
    new_children: impl Fn(&Arc<dyn ExecutionPlan>) -> Option<Vec<Arc<dyn ExecutionPlan>>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| match new_children(&node) {
        None => Ok(Transformed::no(node)),
        Some(children) => {
            let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            Ok(Transformed::yes(node.replace_children(children, options)?))
        }
    })
    .map(|transformed| transformed.data)
}

/// A window's input, sorted, when its required ordering is not literally
/// the input's.
fn sorted_window_input(node: &Arc<dyn ExecutionPlan>) -> Option<Vec<Arc<dyn ExecutionPlan>>> {
    if node.downcast_ref::<WindowAggExec>().is_none()
        && node.downcast_ref::<BoundedWindowAggExec>().is_none()
    {
        return None;
    }
    let Some(OrderingRequirements::Hard(alternatives)) =
        node.required_input_ordering().into_iter().next().flatten()
    else {
        return None;
    };
    let requirement = alternatives.into_iter().next()?;
    let input = Arc::clone(node.children()[0]);
    // The input's own sort, or else its output ordering (which leaves
    // constants out, so a constant column never shows).
    let satisfies = |ordering: &LexOrdering| {
        ordering.len() >= requirement.len()
            && requirement.iter().zip(ordering.iter()).all(|(r, o)| {
                r.expr.eq(&o.expr) && r.options.is_none_or(|options| options == o.options)
            })
    };
    let literal = match input.downcast_ref::<SortExec>() {
        Some(sort) => satisfies(sort.expr()),
        None => input.output_ordering().is_some_and(satisfies),
    };
    if literal {
        return None;
    }
    let ordering = LexOrdering::from(requirement);
    Some(vec![Arc::new(
        SortExec::new(ordering, input).with_preserve_partitioning(true),
    )])
}

/// Whether a join emits left-side rows after its last probe batch
/// (DataFusion's own test, `need_produce_result_in_final`, is crate-private).
fn emits_left_rows_at_end(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::Full
            | JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
    )
}

/// A collected-left join's inputs with the probe side coalesced, when the
/// join emits unmatched left rows and its probe has several partitions.
fn single_probe_join_inputs(node: &Arc<dyn ExecutionPlan>) -> Option<Vec<Arc<dyn ExecutionPlan>>> {
    let collected_left = if let Some(join) = node.downcast_ref::<HashJoinExec>() {
        *join.partition_mode() == PartitionMode::CollectLeft
            && emits_left_rows_at_end(*join.join_type())
    } else if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() {
        emits_left_rows_at_end(*join.join_type())
    } else {
        false
    };
    let [left, probe] = node.children()[..] else {
        return None;
    };
    if !collected_left || probe.output_partitioning().partition_count() <= 1 {
        return None;
    }
    Some(vec![
        Arc::clone(left),
        Arc::new(CoalescePartitionsExec::new(Arc::clone(probe))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_window_over_a_constant_partition_gets_its_sort() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Utf8, true),
            Field::new("amount", DataType::Int64, true),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema, vec![vec![rows.clone()], vec![rows]]).unwrap()),
        )
        .unwrap();
        let frame = ctx
            .sql(
                "SELECT day, amount, sum(amount) OVER (PARTITION BY day) AS total \
                 FROM t WHERE day = 'a'",
            )
            .await
            .unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        let before = displayable(plan.as_ref()).indent(true).to_string();
        // DataFusion relies on `day` being constant: no sort under the window.
        assert!(!before.contains("SortExec"), "{before}");
        let after = SortWindowInputs
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        let text = displayable(after.as_ref()).indent(true).to_string();
        let window_line = text
            .lines()
            .position(|l| l.contains("WindowAggExec"))
            .unwrap();
        assert!(
            text.lines()
                .nth(window_line + 1)
                .is_some_and(|l| l.contains("SortExec")),
            "before:\n{before}\nafter:\n{text}"
        );
        // Once sorted, the rule leaves the plan alone.
        let again = SortWindowInputs
            .optimize(after, &ConfigOptions::default())
            .unwrap();
        assert_eq!(displayable(again.as_ref()).indent(true).to_string(), text);
        let results = datafusion::physical_plan::collect(again, ctx.task_ctx())
            .await
            .unwrap();
        let total: usize = results.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 4);
    }

    #[tokio::test]
    async fn a_left_join_on_a_collected_side_gets_one_probe_partition() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let batch = |values: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let ctx = SessionContext::new();
        // A small left side (collected) and a probe side of two partitions.
        ctx.register_table(
            "small",
            Arc::new(MemTable::try_new(schema.clone(), vec![vec![batch(vec![1, 2, 3])]]).unwrap()),
        )
        .unwrap();
        ctx.register_table(
            "big",
            Arc::new(
                MemTable::try_new(
                    schema.clone(),
                    vec![vec![batch((10..2000).collect())], vec![batch(vec![1])]],
                )
                .unwrap(),
            ),
        )
        .unwrap();
        let frame = ctx
            .sql("SELECT s.k, b.k AS matched FROM small s LEFT JOIN big b ON s.k = b.k")
            .await
            .unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        let before = displayable(plan.as_ref()).indent(true).to_string();
        assert!(
            before.contains("mode=CollectLeft, join_type=Left"),
            "{before}"
        );
        let after = SingleProbeForBuildSideJoins
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        let text = displayable(after.as_ref()).indent(true).to_string();
        // One output partition: one task sees every probe row.
        assert_eq!(
            after.output_partitioning().partition_count(),
            1,
            "before:\n{before}\nafter:\n{text}"
        );
        let rows: usize = datafusion::physical_plan::collect(after, ctx.task_ctx())
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 3, "every left row once, matched or not");
    }
}
