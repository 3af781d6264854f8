//! The oracle's in-memory replay: per silver table, the changes of each run
//! applied per key in sequence order, a change not newer than what the key
//! has seen being ignored (replays, duplicates, late arrivals). For SCD1 and
//! facts that is the same as replaying every distinct change in LSN order;
//! for SCD2 it is the documented policy for changes that arrive after a
//! newer change of the same key (they are not inserted into history; a full
//! refresh, which replays everything in order, includes them).

use std::collections::BTreeMap;

use lakehouse::silver::keys::{Seq, version_hash};

/// `valid_to` of current SCD2 versions (µs): 9999-12-31.
const END_OF_TIME_US: i64 = 253_402_214_400_000_000;

/// One change of one source table.
#[derive(Clone, Debug)]
pub struct Ev {
    /// Source table (`items`, `customers`, `orders`).
    pub table: &'static str,
    /// Business key.
    pub id: i64,
    /// Postgres LSN (unique per change).
    pub lsn: i64,
    /// What it does.
    pub kind: Kind,
    /// The source row before the change, as Debezium's `before` image under
    /// REPLICA IDENTITY FULL or a MySQL full row image (`None`: not sent).
    pub before: Option<Vec<Option<i64>>>,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// The row's non-key values, in the table's column order (`None`: NULL).
    Upsert(Vec<Option<i64>>),
    /// A delete, optionally followed by its Kafka tombstone.
    Delete { tombstone: bool },
    /// A truncate of the whole table.
    Truncate,
}

/// Source `ts_ms` of a change (as the test's Debezium builder sets it).
pub fn ts_ms(base: i64, lsn: i64) -> i64 {
    base + lsn
}

#[derive(Clone, Debug)]
pub struct Version {
    pub data: Vec<Option<i64>>,
    pub sk: i64,
    pub from_us: i64,
    pub to_us: i64,
    pub current: bool,
    /// Facts: the resolved dimension key and fetched city (`None`: unknown member).
    pub lookup: Option<(i64, Option<i64>)>,
}

#[derive(Clone, Debug, Default)]
struct KeyState {
    versions: Vec<Version>,
    /// Sequence (LSN) of the last change applied to the key (upsert or delete).
    seen: Option<i64>,
}

/// One table's expected state.
#[derive(Clone, Debug)]
pub struct Store {
    scd2: bool,
    /// SCD2: indexes into the data that open a new version when they change.
    tracked: Vec<usize>,
    keys: BTreeMap<i64, KeyState>,
    truncate_floor: Option<i64>,
    base: i64,
    /// Maps an LSN to the source position silver orders by.
    position: fn(i64) -> i128,
}

impl Store {
    pub fn new(scd2: bool, tracked: Vec<usize>, base: i64, position: fn(i64) -> i128) -> Self {
        Self {
            scd2,
            tracked,
            keys: BTreeMap::new(),
            truncate_floor: None,
            base,
            position,
        }
    }

    /// Applies one run's changes of this table (in arrival order) and
    /// returns the keys whose row was written by an upsert.
    pub fn apply_run(&mut self, events: &[&Ev]) -> Vec<i64> {
        let mut sorted: Vec<&Ev> = events.to_vec();
        sorted.sort_by_key(|e| e.lsn);
        let mut written = Vec::new();
        for ev in sorted {
            let ts_us = ts_ms(self.base, ev.lsn) * 1000;
            match &ev.kind {
                Kind::Truncate => {
                    let floor = self.truncate_floor;
                    for state in self.keys.values_mut() {
                        if state.seen.max(floor).is_some_and(|s| s >= ev.lsn) {
                            continue;
                        }
                        state.seen = Some(ev.lsn);
                        close_current(state, self.scd2, ts_us);
                    }
                    self.truncate_floor = self.truncate_floor.max(Some(ev.lsn));
                }
                Kind::Delete { .. } => {
                    let floor = self.truncate_floor;
                    let state = self.keys.entry(ev.id).or_default();
                    if state.seen.max(floor).is_some_and(|s| s > ev.lsn) {
                        continue;
                    }
                    state.seen = Some(ev.lsn);
                    close_current(state, self.scd2, ts_us);
                }
                Kind::Upsert(data) => {
                    let floor = self.truncate_floor;
                    let state = self.keys.entry(ev.id).or_default();
                    if state.seen.max(floor).is_some_and(|s| s >= ev.lsn) {
                        continue;
                    }
                    state.seen = Some(ev.lsn);
                    written.push(ev.id);
                    let seq = Seq {
                        position: Some((self.position)(ev.lsn)),
                        ts_ms: Some(ts_ms(self.base, ev.lsn)),
                    };
                    let opened = Version {
                        data: data.clone(),
                        sk: if self.scd2 {
                            version_hash(&ev.id.to_string(), seq)
                        } else {
                            0
                        },
                        from_us: ts_us,
                        to_us: END_OF_TIME_US,
                        current: true,
                        lookup: None,
                    };
                    let tracked = &self.tracked;
                    match state.versions.iter_mut().find(|v| v.current) {
                        Some(v) if !self.scd2 || tracked.iter().all(|&c| v.data[c] == data[c]) => {
                            // SCD1, or an SCD2 change of untracked columns only: in place.
                            v.data = data.clone();
                        }
                        Some(v) => {
                            v.current = false;
                            v.to_us = ts_us.max(v.from_us);
                            state.versions.push(opened);
                        }
                        None => state.versions.push(opened),
                    }
                }
            }
        }
        written
    }

    /// Every version (SCD1, facts: the current rows) with its key.
    pub fn rows(&self) -> Vec<(i64, &Version)> {
        let mut out = Vec::new();
        for (id, state) in &self.keys {
            for v in &state.versions {
                out.push((*id, v));
            }
        }
        out
    }

    /// Facts: sets the lookup of the current row of `id`.
    pub fn set_lookup(&mut self, id: i64, lookup: Option<(i64, Option<i64>)>) {
        if let Some(v) = self
            .keys
            .get_mut(&id)
            .and_then(|s| s.versions.iter_mut().find(|v| v.current))
        {
            v.lookup = lookup;
        }
    }

    /// Facts: keys whose row points at the unknown member.
    pub fn unresolved(&self) -> Vec<i64> {
        self.rows()
            .into_iter()
            .filter(|(_, v)| v.lookup.is_none())
            .map(|(id, _)| id)
            .collect()
    }

    /// Facts: the data of the current row of `id`.
    pub fn current(&self, id: i64) -> Option<&Version> {
        self.keys
            .get(&id)
            .and_then(|s| s.versions.iter().find(|v| v.current))
    }

    /// SCD2: the version of `id` valid at `at_us` (the lookup rule: the
    /// version holding the time, else the first when before it, else the
    /// last).
    pub fn as_of(&self, id: i64, at_us: i64) -> Option<&Version> {
        let versions = &self.keys.get(&id)?.versions;
        let first = versions.iter().min_by_key(|v| v.from_us)?;
        let last = versions.iter().max_by_key(|v| v.from_us)?;
        versions
            .iter()
            .find(|v| v.from_us <= at_us && at_us < v.to_us)
            .or(if at_us < first.from_us {
                Some(first)
            } else {
                Some(last)
            })
    }
}

fn close_current(state: &mut KeyState, scd2: bool, ts_us: i64) {
    if scd2 {
        if let Some(v) = state.versions.iter_mut().find(|v| v.current) {
            v.current = false;
            v.to_us = ts_us.max(v.from_us);
        }
    } else {
        state.versions.clear();
    }
}
