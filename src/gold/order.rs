//! The order marts run in: a mart after the marts its SQL reads, and the
//! marts over the system tables (and whatever reads them) last.
//!
//! A mart may aggregate another mart (`weekly_sales` over `daily_sales`).
//! Run in file order, it would read the other mart's previous version, or
//! fail on a first run where that mart does not exist yet; in dependency
//! order every mart sees this run's commits of the marts it reads. Ties keep
//! the spec files' (alphabetical) order, so the order is stable.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::prelude::SessionContext;

use super::build::referenced_tables;
use super::catalog::SYSTEM_TABLES;
use super::spec::MartSpec;
use crate::error::Result;

/// Marts in run order.
#[derive(Debug)]
pub struct RunOrder<'a> {
    /// Every mart, each after the marts it reads.
    pub marts: Vec<&'a MartSpec>,
    /// How many come first: the rest read the system tables, directly or
    /// through another mart, and run after the catalog is rebuilt with this
    /// run's commits.
    pub early: usize,
    /// Per mart, the tables its SQL refers to (CTE names excluded).
    pub references: BTreeMap<String, BTreeSet<String>>,
}

/// Orders `marts` (in spec file order) by what their SQL reads; see the
/// module documentation. A mart's reads of marts not in `marts` (a run of
/// selected marts) or of itself do not order it. Fails on SQL that does not
/// parse, and on marts reading each other in a cycle, naming the cycle.
pub fn run_order<'a>(ctx: &SessionContext, marts: &[&'a MartSpec]) -> Result<RunOrder<'a>> {
    let names: BTreeSet<&str> = marts.iter().map(|m| m.name.as_str()).collect();
    let mut reads: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut late: BTreeSet<&str> = BTreeSet::new();
    let mut references = BTreeMap::new();
    for mart in marts {
        let referenced = referenced_tables(ctx, mart)?;
        if referenced
            .iter()
            .any(|r| SYSTEM_TABLES.contains(&r.as_str()))
        {
            late.insert(&mart.name);
        }
        let of_marts = referenced
            .iter()
            .filter(|r| *r != &mart.name && names.contains(r.as_str()))
            .cloned()
            .collect();
        reads.insert(&mart.name, of_marts);
        references.insert(mart.name.clone(), referenced);
    }
    // A mart over a late mart is late too.
    loop {
        let before = late.len();
        for mart in marts {
            if reads[mart.name.as_str()]
                .iter()
                .any(|r| late.contains(r.as_str()))
            {
                late.insert(&mart.name);
            }
        }
        if late.len() == before {
            break;
        }
    }
    let (early, rest): (Vec<&MartSpec>, Vec<&MartSpec>) = marts
        .iter()
        .copied()
        .partition(|m| !late.contains(m.name.as_str()));
    let mut ordered = Vec::with_capacity(marts.len());
    let mut placed = BTreeSet::new();
    for group in [early, rest] {
        let mut waiting = group;
        while !waiting.is_empty() {
            let ready = waiting
                .iter()
                .position(|m| reads[m.name.as_str()].iter().all(|r| placed.contains(r)));
            let Some(index) = ready else {
                return Err(cycle_error(&waiting, &reads));
            };
            let mart = waiting.remove(index);
            placed.insert(mart.name.clone());
            ordered.push(mart);
        }
    }
    let early = marts.len() - late.len();
    Ok(RunOrder {
        marts: ordered,
        early,
        references,
    })
}

/// The error for marts that cannot be ordered: follows reads from the first
/// waiting mart until one repeats, and names that cycle.
fn cycle_error(
    waiting: &[&MartSpec],
    reads: &BTreeMap<&str, BTreeSet<String>>,
) -> crate::error::Error {
    let waiting_names: BTreeSet<&str> = waiting.iter().map(|m| m.name.as_str()).collect();
    let first = waiting[0];
    let mut path: Vec<&str> = vec![first.name.as_str()];
    loop {
        let current = path[path.len() - 1];
        // Every waiting mart reads at least one other waiting mart.
        let Some(next) = reads[current]
            .iter()
            .find(|r| waiting_names.contains(r.as_str()))
        else {
            break;
        };
        if let Some(start) = path.iter().position(|p| *p == next.as_str()) {
            let mut cycle: Vec<&str> = path[start..].to_vec();
            cycle.push(next.as_str());
            let spec = waiting
                .iter()
                .find(|m| m.name == cycle[0])
                .copied()
                .unwrap_or(first);
            return spec.sql_error(format!(
                "marts read each other in a cycle: {}; no order builds them",
                cycle.join(" -> ")
            ));
        }
        path.push(next.as_str());
    }
    first.sql_error("marts read each other in a cycle; no order builds them")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mart(name: &str, sql: &str) -> MartSpec {
        MartSpec {
            name: name.into(),
            file: format!("{name}.toml").into(),
            sql_file: format!("{name}.sql").into(),
            description: None,
            sql: sql.into(),
            keys: vec!["k".into()],
            partition_by: None,
            incremental_by: None,
            indexes: Vec::new(),
            incremental: Default::default(),
            publish: false,
            zorder: Vec::new(),
        }
    }

    fn names(order: &RunOrder<'_>) -> Vec<String> {
        order.marts.iter().map(|m| m.name.clone()).collect()
    }

    #[test]
    fn system_table_readers_are_found_from_the_sql_references() {
        // Nothing needs to be registered: the references come from the parse.
        let ctx = SessionContext::new();
        let late = |sql: &str| run_order(&ctx, &[&mart("m", sql)]).unwrap().early == 0;
        assert!(late("SELECT job FROM lakehouse_runs"));
        assert!(late(
            "WITH c AS (SELECT * FROM lakehouse_commits) SELECT * FROM c JOIN fact_sales USING (k)"
        ));
        assert!(late(
            "SELECT * FROM t WHERE k IN (SELECT k FROM lakehouse_watermarks)"
        ));
        assert!(!late("SELECT * FROM fact_sales"));
        // A mention that is not a table reference does not count.
        assert!(!late("SELECT 'lakehouse_runs' AS k FROM fact_sales"));
        assert!(!late(
            "WITH lakehouse_tables AS (SELECT 1 AS k) SELECT * FROM lakehouse_tables"
        ));
        let error = run_order(&ctx, &[&mart("m", "SELEC nothing")]).unwrap_err();
        assert!(error.to_string().contains("m.sql"), "{error}");
    }

    #[test]
    fn a_mart_runs_after_the_marts_it_reads_and_ties_keep_file_order() {
        let ctx = SessionContext::new();
        let a = mart("a_weekly", "SELECT * FROM d_daily JOIN c_other USING (k)");
        let b = mart("b_plain", "SELECT * FROM fact_sales");
        let c = mart("c_other", "SELECT * FROM fact_sales");
        let d = mart("d_daily", "SELECT * FROM c_other");
        let order = run_order(&ctx, &[&a, &b, &c, &d]).unwrap();
        assert_eq!(names(&order), ["b_plain", "c_other", "d_daily", "a_weekly"]);
        assert_eq!(order.early, 4);
        // Reads of itself or of marts outside the run do not order a mart.
        let own = mart(
            "a_own",
            "SELECT * FROM a_own UNION ALL SELECT * FROM d_daily",
        );
        let order = run_order(&ctx, &[&own, &b]).unwrap();
        assert_eq!(names(&order), ["a_own", "b_plain"]);
    }

    #[test]
    fn a_mart_over_a_system_table_reader_runs_with_the_late_ones() {
        let ctx = SessionContext::new();
        let a = mart("a_summary", "SELECT * FROM b_health");
        let b = mart("b_health", "SELECT * FROM lakehouse_runs");
        let c = mart("c_sales", "SELECT * FROM fact_sales");
        let order = run_order(&ctx, &[&a, &b, &c]).unwrap();
        assert_eq!(names(&order), ["c_sales", "b_health", "a_summary"]);
        assert_eq!(order.early, 1);
    }

    #[test]
    fn a_cycle_is_refused_naming_its_marts() {
        let ctx = SessionContext::new();
        let a = mart("a", "SELECT * FROM fact_sales");
        let b = mart("b", "SELECT * FROM c");
        let c = mart("c", "SELECT * FROM d");
        let d = mart("d", "SELECT * FROM b JOIN a USING (k)");
        let error = run_order(&ctx, &[&a, &b, &c, &d]).unwrap_err().to_string();
        assert!(error.contains("b.sql"), "{error}");
        assert!(error.contains("b -> c -> d -> b"), "{error}");
    }
}
