//! Background activity not tied to an order: price changes, profile edits, signups,
//! GDPR erasures, product launches, and inventory bookkeeping (picks and restocks).

use super::names::CITIES;
use super::orders::{dec2, int, text, tz, unscaled};
use super::{Event, Simulator};
use crate::model::{Table, Value, set};

use rand::Rng;

impl Simulator {
    /// One background transaction, kind chosen by weight.
    pub(super) fn on_background(&mut self) {
        match self.rng.random_range(0..100) {
            0..40 => self.change_price(),
            40..72 => self.update_profile(),
            72..90 => self.signup(),
            90..94 => self.gdpr_delete(),
            94..97 => self.launch_product(),
            _ => self.toggle_product(),
        }
    }

    fn change_price(&mut self) {
        let now = self.clock;
        let pid = self.pick_product();
        let pct: i128 = self.rng.random_range(2..20);
        let up = self.chance(0.55);
        let Some(row) = self.products.get_mut(&pid) else {
            return;
        };
        let old = unscaled(row, "price");
        let delta = old * pct / 100;
        let raw = if up { old + delta } else { old - delta };
        // Keep psychological .99 / .00 price points.
        let euros = (raw / 100).max(1);
        let price = if old % 100 == 99 {
            euros * 100 + 99
        } else {
            euros * 100
        };
        if price == old {
            return;
        }
        let before = row.clone();
        set(row, "price", dec2(price));
        set(row, "updated_at", tz(now));
        let after = row.clone();
        self.update(Table::Products, before, after);
    }

    fn toggle_product(&mut self) {
        let now = self.clock;
        let pid = self.pick(&self.popularity.clone()[..]);
        let Some(row) = self.products.get_mut(&pid) else {
            return;
        };
        let before = row.clone();
        let active = before
            .iter()
            .any(|(c, v)| *c == "active" && *v == Value::Bool(true));
        set(row, "active", Value::Bool(!active));
        set(row, "updated_at", tz(now));
        let after = row.clone();
        self.update(Table::Products, before, after);
    }

    fn update_profile(&mut self) {
        if self.customer_ids.is_empty() {
            return;
        }
        let now = self.clock;
        let id = self.pick(&self.customer_ids.clone()[..]);
        let kind = self.rng.random_range(0..3);
        let (city, country) = self.pick(CITIES);
        let segment = self.pick(&["consumer", "business", "vip"]);
        let opt_in = self.chance(0.5);
        let Some(row) = self.customers.get_mut(&id) else {
            return;
        };
        let before = row.clone();
        match kind {
            0 => {
                set(row, "city", text(city));
                set(row, "country", text(country));
            }
            1 => set(row, "segment", text(segment)),
            _ => set(row, "marketing_opt_in", Value::Bool(opt_in)),
        }
        set(row, "updated_at", tz(now));
        let after = row.clone();
        self.update(Table::Customers, before, after);
    }

    fn signup(&mut self) {
        let row = self.new_customer_row(self.clock);
        self.add_customer(row.clone());
        self.insert(Table::Customers, row);
    }

    /// Right to erasure: customers without open orders are hard-deleted (orders keep
    /// their `customer_id` for accounting; there is no FK on it).
    fn gdpr_delete(&mut self) {
        for _ in 0..10 {
            if self.customer_ids.len() < 2 {
                return;
            }
            let id = self.pick(&self.customer_ids.clone()[..]);
            if self.open_orders.contains_key(&id) {
                continue;
            }
            if let Some(row) = self.remove_customer(id) {
                self.delete(Table::Customers, row);
            }
            return;
        }
    }

    fn launch_product(&mut self) {
        let rows = self.create_product(self.clock);
        let mut rows = rows.into_iter();
        if let Some(product) = rows.next() {
            let id = int(&product, "id");
            self.insert(Table::Products, product);
            // New products enter at a random popularity rank.
            let rank = self.rng.random_range(0..=self.popularity.len());
            self.popularity.insert(rank, id);
            self.rebuild_zipf();
        }
        for inv in rows {
            self.insert(Table::Inventory, inv);
        }
    }

    /// Picks `qty` units from the warehouse holding most of the product, emitting the
    /// inventory update; schedules a restock when stock falls below the reorder level.
    pub(super) fn take_stock(&mut self, product: i64, qty: i64) -> &'static str {
        let best = self
            .inventory
            .range((product, "")..)
            .take_while(|((p, _), _)| *p == product)
            .max_by_key(|(_, row)| int(row, "quantity"))
            .map(|((_, wh), _)| *wh);
        let Some(wh) = best else {
            return "AMS1";
        };
        self.adjust_stock(product, wh, -qty);
        wh
    }

    /// Adds `delta` units (negative = pick) to one inventory row, never below zero.
    pub(super) fn adjust_stock(&mut self, product: i64, wh: &'static str, delta: i64) {
        let now = self.clock;
        let Some(row) = self.inventory.get_mut(&(product, wh)) else {
            return;
        };
        let before = row.clone();
        let qty = (int(row, "quantity") + delta).max(0);
        let low = qty < int(row, "reorder_level");
        set(row, "quantity", Value::Int(qty));
        set(row, "updated_at", Value::Timestamp(now));
        let after = row.clone();
        self.update(Table::Inventory, before, after);
        if low && self.restock_pending.insert((product, wh)) {
            let at = now + self.minutes(360.0, 4320.0);
            self.schedule(at, Event::Restock(product, wh));
        }
    }

    pub(super) fn on_restock(&mut self, product: i64, wh: &'static str) {
        self.restock_pending.remove(&(product, wh));
        let now = self.clock;
        let units = self.rng.random_range(60..400);
        let Some(row) = self.inventory.get_mut(&(product, wh)) else {
            return;
        };
        let before = row.clone();
        set(row, "quantity", Value::Int(int(row, "quantity") + units));
        set(row, "last_restock_at", tz(now));
        set(row, "updated_at", Value::Timestamp(now));
        let after = row.clone();
        self.update(Table::Inventory, before, after);
    }
}
