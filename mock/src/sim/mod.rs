//! Deterministic simulation of an e-commerce OLTP database over simulated time.
//!
//! The simulator keeps the live rows of every table, advances a simulated clock
//! through a priority queue of scheduled events (order arrivals with daily/weekly
//! seasonality, order lifecycle steps, background catalogue/customer activity) and
//! turns each event into one committed [`Transaction`]. Everything is driven by one
//! seeded `StdRng` and ordered collections, so a seed always yields the same output.

mod background;
mod names;
mod orders;
mod seasonality;
mod seed;

use crate::debezium::epoch_millis;
pub use crate::model::{Change, Op, Snapshot, Transaction};
use crate::model::{RowValues, Table};
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// RNG seed; identical seeds give identical output.
    pub seed: u64,
    /// Simulated clock at the snapshot (UTC).
    pub start: NaiveDateTime,
    /// Debezium `topic.prefix` (also the connector's logical name).
    pub topic_prefix: String,
    /// Initial number of customers.
    pub customers: usize,
    /// Initial number of products.
    pub products: usize,
    /// Number of sellers.
    pub sellers: usize,
    /// Number of warehouses (1–5).
    pub warehouses: usize,
    /// Mean order arrival rate per simulated hour (before seasonality).
    pub orders_per_hour: f64,
    /// Mean rate of background events (price changes, profile edits, signups,
    /// GDPR deletes, product launches) per simulated hour.
    pub background_per_hour: f64,
    /// How many recent transactions to keep for [`Simulator::replay_last`] (0 = none).
    pub history: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            start: NaiveDate::from_ymd_opt(2024, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or_default(),
            topic_prefix: "shop".to_string(),
            customers: 200,
            products: 100,
            sellers: 20,
            warehouses: 3,
            orders_per_hour: 40.0,
            background_per_hour: 6.0,
            history: 256,
        }
    }
}

/// A scheduled simulation event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Arrival,
    Background,
    Pay(i64),
    Cancel(i64),
    Ship(i64),
    Scan(i64, orders::Scan),
    Deliver(i64),
    Return(i64),
    Restock(i64, &'static str),
}

#[derive(Debug, PartialEq, Eq)]
struct Scheduled {
    at: NaiveDateTime,
    seq: u64,
    event: Event,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Next value of each `bigserial` sequence.
#[derive(Debug, Default)]
struct Ids {
    customer: i64,
    seller: i64,
    category: i64,
    product: i64,
    order: i64,
    payment: i64,
    shipment: i64,
    shipment_event: i64,
}

fn next(id: &mut i64) -> i64 {
    *id += 1;
    *id
}

/// The simulated database plus its change stream.
pub struct Simulator {
    cfg: SimConfig,
    rng: StdRng,
    /// Time of the transaction being built (what `now()` returns inside it).
    clock: NaiveDateTime,
    last_commit: NaiveDateTime,
    next_tx_id: i64,
    next_lsn: i64,
    last_commit_lsn: i64,
    ids: Ids,
    customers: BTreeMap<i64, RowValues>,
    /// Live customer ids for O(1) uniform sampling, with each id's position.
    customer_ids: Vec<i64>,
    customer_pos: BTreeMap<i64, usize>,
    open_orders: BTreeMap<i64, u32>,
    sellers: BTreeMap<i64, RowValues>,
    categories: BTreeMap<i64, RowValues>,
    leaf_categories: Vec<i64>,
    products: BTreeMap<i64, RowValues>,
    /// Product ids by popularity rank, and the Zipf CDF over those ranks.
    popularity: Vec<i64>,
    zipf_cdf: Vec<f64>,
    inventory: BTreeMap<(i64, &'static str), RowValues>,
    restock_pending: BTreeSet<(i64, &'static str)>,
    orders: BTreeMap<i64, orders::OrderState>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Changes of the transaction being built.
    pending: Vec<Change>,
    history: VecDeque<Transaction>,
}

impl Simulator {
    /// Creates the database with its initial rows (customers, sellers, categories,
    /// products, inventory) and schedules the first events.
    pub fn new(cfg: SimConfig) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        let mut sim = Simulator {
            rng,
            clock: cfg.start,
            last_commit: cfg.start,
            next_tx_id: 760,
            next_lsn: 24_023_128,
            last_commit_lsn: 24_023_128,
            ids: Ids::default(),
            customers: BTreeMap::new(),
            customer_ids: Vec::new(),
            customer_pos: BTreeMap::new(),
            open_orders: BTreeMap::new(),
            sellers: BTreeMap::new(),
            categories: BTreeMap::new(),
            leaf_categories: Vec::new(),
            products: BTreeMap::new(),
            popularity: Vec::new(),
            zipf_cdf: Vec::new(),
            inventory: BTreeMap::new(),
            restock_pending: BTreeSet::new(),
            orders: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            pending: Vec::new(),
            history: VecDeque::new(),
            cfg,
        };
        sim.seed_initial_rows();
        // Streaming starts a little after the snapshot.
        let first = sim.cfg.start + TimeDelta::seconds(5);
        let arrival = sim.next_arrival(first);
        sim.schedule(arrival, Event::Arrival);
        let bg = sim.next_background(first);
        sim.schedule(bg, Event::Background);
        sim
    }

    /// The configuration the simulator was built with.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Reads every current row of every table as Debezium's initial snapshot does:
    /// table by table (alphabetically), op `r`, one exported snapshot transaction.
    /// Call it before the first [`Simulator::next_transaction`].
    pub fn snapshot(&mut self) -> Snapshot {
        let lsn = self.next_lsn;
        let tx_id = self.next_tx_id;
        self.next_tx_id += 1;
        // Streaming resumes after the snapshot's position.
        self.next_lsn += 4096;
        self.last_commit_lsn = lsn;
        let base_ms = epoch_millis(self.cfg.start);
        let mut changes = Vec::new();
        for table in Table::ALL {
            let rows: Vec<RowValues> = match table {
                Table::Categories => self.categories.values().cloned().collect(),
                Table::Customers => self.customers.values().cloned().collect(),
                Table::Inventory => self.inventory.values().cloned().collect(),
                Table::Products => self.products.values().cloned().collect(),
                Table::Sellers => self.sellers.values().cloned().collect(),
                _ => Vec::new(),
            };
            for row in rows {
                // Reading is fast: ~20 rows per millisecond of processing time.
                let ts_ms = base_ms + 1 + changes.len() as i64 / 20;
                changes.push(Change {
                    table,
                    op: Op::Read,
                    before: None,
                    after: Some(row),
                    lsn,
                    ts_ms,
                });
            }
        }
        Snapshot {
            tx_id,
            lsn,
            ts: self.cfg.start,
            changes,
        }
    }

    /// Advances simulated time to the next event that changes data and returns the
    /// committed transaction (1..n changes across tables).
    pub fn next_transaction(&mut self) -> Transaction {
        loop {
            let Some(Reverse(item)) = self.queue.pop() else {
                // Unreachable in practice (arrivals always reschedule); recover anyway.
                let at = self.next_arrival(self.clock);
                self.schedule(at, Event::Arrival);
                continue;
            };
            // Keep row timestamps monotonic with commits.
            self.clock = item.at.max(self.last_commit + TimeDelta::milliseconds(1));
            self.pending.clear();
            let begin_lsn = self.next_lsn;
            self.next_lsn += 48;
            self.dispatch(item.event);
            if self.pending.is_empty() {
                // Stale lifecycle event (order already gone): Postgres would not see it.
                self.next_lsn = begin_lsn;
                continue;
            }
            return self.commit(begin_lsn);
        }
    }

    /// Re-emits the last `n` committed transactions (oldest first) with their
    /// original LSNs and payloads, as a connector that restarts from an older
    /// offset would. Limited to the configured `history`.
    pub fn replay_last(&self, n: usize) -> Vec<Transaction> {
        let skip = self.history.len().saturating_sub(n);
        self.history.iter().skip(skip).cloned().collect()
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Arrival => {
                self.on_arrival();
                let at = self.next_arrival(self.clock);
                self.schedule(at, Event::Arrival);
            }
            Event::Background => {
                self.on_background();
                let at = self.next_background(self.clock);
                self.schedule(at, Event::Background);
            }
            Event::Pay(id) => self.on_pay(id),
            Event::Cancel(id) => self.on_cancel(id),
            Event::Ship(id) => self.on_ship(id),
            Event::Scan(id, scan) => self.on_scan(id, scan),
            Event::Deliver(id) => self.on_deliver(id),
            Event::Return(id) => self.on_return(id),
            Event::Restock(product, wh) => self.on_restock(product, wh),
        }
    }

    fn commit(&mut self, begin_lsn: i64) -> Transaction {
        let commit_ts = self.clock + TimeDelta::microseconds(self.rng.random_range(200..40_000));
        self.last_commit = commit_ts;
        let commit_lsn = self.next_lsn;
        self.next_lsn += 56;
        // Connector lag: events are processed a few ms to ~1 s after commit.
        let mut ts_ms = epoch_millis(commit_ts) + self.rng.random_range(3..900);
        let mut changes = std::mem::take(&mut self.pending);
        for c in &mut changes {
            c.ts_ms = ts_ms;
            ts_ms += i64::from(self.rng.random_bool(0.3));
        }
        let tx = Transaction {
            tx_id: self.next_tx_id,
            lsn_start: begin_lsn,
            commit_lsn,
            prev_commit_lsn: self.last_commit_lsn,
            commit_ts,
            changes,
        };
        self.last_commit_lsn = commit_lsn;
        // Other (uncaptured) transactions also consume xids.
        self.next_tx_id += self.rng.random_range(1..4);
        if self.cfg.history > 0 {
            if self.history.len() == self.cfg.history {
                self.history.pop_front();
            }
            self.history.push_back(tx.clone());
        }
        tx
    }

    fn schedule(&mut self, at: NaiveDateTime, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Next order arrival after `from` (non-homogeneous Poisson process by thinning).
    fn next_arrival(&mut self, from: NaiveDateTime) -> NaiveDateTime {
        let lambda_max = self.cfg.orders_per_hour.max(1e-6) * seasonality::max_factor();
        let mut t = from;
        loop {
            t += self.exp_delay(lambda_max);
            let accept = seasonality::factor(t) / seasonality::max_factor();
            if self.rng.random::<f64>() < accept {
                return t;
            }
        }
    }

    fn next_background(&mut self, from: NaiveDateTime) -> NaiveDateTime {
        let rate = self.cfg.background_per_hour.max(1e-6);
        from + self.exp_delay(rate)
    }

    /// Exponentially distributed delay for a rate per hour, in whole microseconds.
    fn exp_delay(&mut self, per_hour: f64) -> TimeDelta {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let hours = -u.ln() / per_hour;
        TimeDelta::microseconds((hours * 3.6e9) as i64 + 1)
    }

    /// Uniform random delay in `[lo, hi)` minutes, in whole microseconds.
    fn minutes(&mut self, lo: f64, hi: f64) -> TimeDelta {
        TimeDelta::microseconds((self.rng.random_range(lo..hi) * 6e7) as i64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    /// Simulated WAL size of a row change, so LSN gaps look like real WAL.
    fn wal_bytes(&mut self, row: Option<&RowValues>) -> i64 {
        let cols = row.map_or(4, |r| r.len() as i64);
        64 + cols * 24 + self.rng.random_range(0..64)
    }

    fn push_change(
        &mut self,
        table: Table,
        op: Op,
        before: Option<RowValues>,
        after: Option<RowValues>,
    ) {
        let lsn = self.next_lsn;
        self.next_lsn += self.wal_bytes(after.as_ref().or(before.as_ref()));
        self.pending.push(Change {
            table,
            op,
            before,
            after,
            lsn,
            ts_ms: 0,
        });
    }

    fn insert(&mut self, table: Table, row: RowValues) {
        self.push_change(table, Op::Create, None, Some(row));
    }

    fn update(&mut self, table: Table, before: RowValues, after: RowValues) {
        self.push_change(table, Op::Update, Some(before), Some(after));
    }

    fn delete(&mut self, table: Table, before: RowValues) {
        self.push_change(table, Op::Delete, Some(before), None);
    }
}
