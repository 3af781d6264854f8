//! The backlog an `--until-idle` run must work off: every partition of the
//! subscription, with the high watermark it had when the run started.
//!
//! A run is done when each of its own partitions reached that watermark and,
//! for partitions the group gave to other members (or to members that died
//! and have not been evicted yet), when `bronze_events` shows that someone
//! committed up to it. Checking only the run's own assignment would stop a
//! scheduled run early whenever the group is still rebalancing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use crate::error::{Error, Result};

/// Partitions of the subscription and their watermarks at start.
#[derive(Debug, Clone)]
pub struct Backlog {
    /// `(topic, partition) -> (low, high)` watermarks.
    targets: BTreeMap<(String, i32), (i64, i64)>,
    /// Last time a partition owned elsewhere moved closer to its target.
    last_progress: Instant,
    /// Positions of those partitions at the last check.
    last_seen: BTreeMap<(String, i32), Option<i64>>,
}

/// The low and high watermarks of every partition of the topics that
/// `subscription` (topic names and `^regex` patterns, as librdkafka takes
/// them; see [`super::KafkaConfig::subscription`]) names.
pub fn subscription_watermarks<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    subscription: &[String],
    timeout: Duration,
) -> Result<BTreeMap<(String, i32), (i64, i64)>> {
    let patterns = subscription
        .iter()
        .filter_map(|s| s.strip_prefix('^'))
        .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Condition(format!("topic pattern: {e}")))?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| Error::kafka("cannot read topic metadata", e))?;
    let mut targets = BTreeMap::new();
    for topic in metadata.topics() {
        let name = topic.name();
        let wanted =
            subscription.iter().any(|s| s == name) || patterns.iter().any(|p| p.is_match(name));
        if !wanted {
            continue;
        }
        for partition in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(name, partition.id(), timeout)
                .map_err(|e| {
                    Error::kafka(
                        format!("cannot read the watermarks of {name}/{}", partition.id()),
                        e,
                    )
                })?;
            targets.insert((name.to_string(), partition.id()), (low, high));
        }
    }
    Ok(targets)
}

impl Backlog {
    /// Reads the subscription's partitions and their watermarks from the broker.
    /// `subscription` holds topic names and `^regex` patterns, as librdkafka takes them.
    pub fn capture<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
        consumer: &C,
        subscription: &[String],
        timeout: Duration,
    ) -> Result<Self> {
        let targets = subscription_watermarks(consumer, subscription, timeout)?;
        Ok(Self {
            targets,
            last_progress: Instant::now(),
            last_seen: BTreeMap::new(),
        })
    }

    /// The high watermark a partition must reach, if it is part of the backlog.
    pub fn target(&self, topic: &str, partition: i32) -> Option<i64> {
        self.targets
            .get(&(topic.to_string(), partition))
            .filter(|(low, high)| high > low)
            .map(|(_, high)| *high)
    }

    /// Partitions not in `owned`, which someone else must commit.
    pub fn foreign<'a>(
        &'a self,
        owned: &'a impl Fn(&(String, i32)) -> bool,
    ) -> impl Iterator<Item = &'a (String, i32)> + 'a {
        self.targets.keys().filter(move |tp| !owned(tp))
    }

    /// Given the committed positions of the foreign partitions, returns those
    /// still short of their target. Errors when none of them moved for `stall`.
    pub fn remaining(
        &mut self,
        committed: &BTreeMap<(String, i32), Option<i64>>,
        stall: Duration,
    ) -> Result<Vec<(String, i32)>> {
        let mut remaining = Vec::new();
        for (tp, position) in committed {
            let Some(&(low, high)) = self.targets.get(tp) else {
                continue;
            };
            let reached = high <= low || position.is_some_and(|p| p + 1 >= high);
            if !reached {
                remaining.push(tp.clone());
            }
        }
        if committed != &self.last_seen {
            self.last_seen = committed.clone();
            self.last_progress = Instant::now();
        } else if !remaining.is_empty() && self.last_progress.elapsed() >= stall {
            return Err(Error::Condition(format!(
                "--until-idle: partitions {remaining:?} are assigned to other group members that made no progress for {stall:?}"
            )));
        }
        Ok(remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog of topic `t`: `(partition, low, high)`.
    fn backlog(partitions: &[(i32, i64, i64)]) -> Backlog {
        Backlog {
            targets: partitions
                .iter()
                .map(|(p, low, high)| (("t".to_string(), *p), (*low, *high)))
                .collect(),
            last_progress: Instant::now(),
            last_seen: BTreeMap::new(),
        }
    }

    #[test]
    fn remaining_partitions_and_stall() {
        let mut b = backlog(&[(0, 0, 10), (1, 5, 5), (2, 0, 3)]);
        let committed: BTreeMap<_, _> = [
            (("t".to_string(), 0), Some(4)),
            (("t".to_string(), 1), None),
            (("t".to_string(), 2), Some(2)),
        ]
        .into();
        assert_eq!(
            b.remaining(&committed, Duration::from_secs(60)).unwrap(),
            vec![("t".to_string(), 0)]
        );
        // No progress since the last check and the stall time passed: an error.
        assert!(b.remaining(&committed, Duration::ZERO).is_err());
        let done: BTreeMap<_, _> = [(("t".to_string(), 0), Some(9))].into();
        assert!(b.remaining(&done, Duration::ZERO).unwrap().is_empty());
    }
}
