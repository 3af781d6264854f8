//! A physical optimizer rule of the cluster's scheduler: window functions
//! get their input sort back when it was only implied by constants.
//!
//! DataFusion leaves out a window's input sort when its partition columns
//! are constant there (a gold mart rebuilding one date filters
//! `payment_date = '2024-01-01'`, so `PARTITION BY payment_date` is trivially
//! sorted). Ballista then cuts the plan into stages at the repartition under
//! the window, and the shuffle reader that replaces it on an executor knows
//! nothing of those constants: the window finds its input unsorted and
//! fails the job ("All partition by columns should have an ordering").
//! Sorting a constant column costs one comparison per row; the rule adds the
//! sort wherever a window's required ordering is not literally its input's.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::{LexOrdering, OrderingRequirements};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SortWindowInputs;

impl PhysicalOptimizerRule for SortWindowInputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let is_window = node.downcast_ref::<WindowAggExec>().is_some()
                || node.downcast_ref::<BoundedWindowAggExec>().is_some();
            let required = node.required_input_ordering().into_iter().next().flatten();
            let (true, Some(OrderingRequirements::Hard(alternatives))) = (is_window, required)
            else {
                return Ok(Transformed::no(node));
            };
            let Some(requirement) = alternatives.into_iter().next() else {
                return Ok(Transformed::no(node));
            };
            let input = Arc::clone(node.children()[0]);
            // The input's own sort, or else its output ordering (which
            // leaves constants out, so a constant column never shows).
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
                return Ok(Transformed::no(node));
            }
            let ordering = LexOrdering::from(requirement);
            let sorted: Arc<dyn ExecutionPlan> =
                Arc::new(SortExec::new(ordering, input).with_preserve_partitioning(true));
            // The window's output ordering is recomputed over its new input.
            let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            Ok(Transformed::yes(
                node.replace_children(vec![sorted], options)?,
            ))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "lakehouse_sort_window_inputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
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
}
