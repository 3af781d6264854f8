//! Initial database contents and the row builders shared with later inserts.

use super::names::*;
use super::{Simulator, next};
use crate::model::{RowValues, Value};
use chrono::{NaiveDateTime, TimeDelta};
use rand::Rng;

/// Zipf exponent of product popularity.
const ZIPF_S: f64 = 1.07;

fn tz(t: NaiveDateTime) -> Value {
    Value::TimestampTz(t.and_utc())
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

impl Simulator {
    /// Creates the rows that exist before the connector starts (no change events).
    pub(super) fn seed_initial_rows(&mut self) {
        let epoch = self.cfg.start - TimeDelta::days(900);
        let mut sort = 0;
        for (top, subs) in CATEGORY_TREE {
            let parent = next(&mut self.ids.category);
            let slug = slugify(top);
            sort += 1;
            let row = category_row(parent, None, top, &slug, &format!("/{slug}"), sort, epoch);
            self.categories.insert(parent, row);
            for (i, sub) in subs.iter().enumerate() {
                let id = next(&mut self.ids.category);
                let sub_slug = slugify(sub);
                let path = format!("/{slug}/{sub_slug}");
                let row =
                    category_row(id, Some(parent), sub, &sub_slug, &path, i as i64 + 1, epoch);
                self.categories.insert(id, row);
                self.leaf_categories.push(id);
            }
        }
        for _ in 0..self.cfg.sellers.max(1) {
            let created = self.past_time(850);
            let row = self.new_seller_row(created);
            if let Some(Value::Int(id)) = row.first().map(|(_, v)| v.clone()) {
                self.sellers.insert(id, row);
            }
        }
        for _ in 0..self.cfg.products.max(1) {
            let created = self.past_time(700);
            self.create_product(created);
        }
        self.popularity = self.products.keys().copied().collect();
        // Fisher-Yates with our RNG so popularity ranks are seed-determined.
        for i in (1..self.popularity.len()).rev() {
            let j = self.rng.random_range(0..=i);
            self.popularity.swap(i, j);
        }
        self.rebuild_zipf();
        for _ in 0..self.cfg.customers {
            let created = self.past_time(720);
            let row = self.new_customer_row(created);
            self.add_customer(row);
        }
    }

    /// A random time up to `max_days` before the simulation start (µs precision).
    fn past_time(&mut self, max_days: i64) -> NaiveDateTime {
        let micros = self
            .rng
            .random_range(3_600_000_000..max_days * 86_400_000_000);
        self.cfg.start - TimeDelta::microseconds(micros)
    }

    fn uuid_v4(&mut self) -> u128 {
        let raw: u128 = self.rng.random();
        let v4 = (raw & !(0xf << 76)) | (0x4 << 76);
        (v4 & !(0x3 << 62)) | (0x2 << 62)
    }

    /// A fresh random UUID (v4 layout) for provider references.
    pub(super) fn new_uuid(&mut self) -> Value {
        Value::Uuid(self.uuid_v4())
    }

    fn new_seller_row(&mut self, created: NaiveDateTime) -> RowValues {
        let id = next(&mut self.ids.seller);
        let name = format!(
            "{} {} {}",
            self.pick(ADJECTIVES),
            self.pick(NOUNS),
            self.pick(SELLER_SUFFIXES)
        );
        let (_, country) = self.pick(CITIES);
        let rating = if self.chance(0.9) {
            Value::Decimal {
                unscaled: self.rng.random_range(300..=500),
                scale: 2,
            }
        } else {
            Value::Null
        };
        vec![
            ("id", Value::Int(id)),
            ("name", text(name)),
            ("email", text(format!("seller{id}@partners.example"))),
            ("country", text(country)),
            ("rating", rating),
            ("active", Value::Bool(self.chance(0.95))),
            ("created_at", tz(created)),
            ("updated_at", tz(created)),
        ]
    }

    /// Builds a new customer row (id from the sequence).
    pub(super) fn new_customer_row(&mut self, created: NaiveDateTime) -> RowValues {
        let id = next(&mut self.ids.customer);
        let (first, first_ascii) = self.pick(FIRST_NAMES);
        let (last, last_ascii) = self.pick(LAST_NAMES);
        let (city, country) = self.pick(CITIES);
        let domain = self.pick(DOMAINS);
        let phone = if self.chance(0.7) {
            text(format!(
                "+31 6 {:04} {:04}",
                self.rng.random_range(0..10_000),
                self.rng.random_range(0..10_000)
            ))
        } else {
            Value::Null
        };
        let segment = match self.rng.random_range(0..100) {
            0..80 => "consumer",
            80..95 => "business",
            _ => "vip",
        };
        vec![
            ("id", Value::Int(id)),
            ("external_id", Value::Uuid(self.uuid_v4())),
            (
                "email",
                text(format!("{first_ascii}.{last_ascii}{id}@{domain}")),
            ),
            ("first_name", text(first)),
            ("last_name", text(last)),
            ("phone", phone),
            ("city", text(city)),
            ("country", text(country)),
            ("segment", text(segment)),
            ("marketing_opt_in", Value::Bool(self.chance(0.4))),
            ("created_at", tz(created)),
            ("updated_at", tz(created)),
        ]
    }

    /// Registers a customer row in the live state.
    pub(super) fn add_customer(&mut self, row: RowValues) {
        let Some(id) = row.first().and_then(|(_, v)| v.as_int()) else {
            return;
        };
        self.customer_pos.insert(id, self.customer_ids.len());
        self.customer_ids.push(id);
        self.customers.insert(id, row);
    }

    /// Removes a customer from the live state, returning its last row image.
    pub(super) fn remove_customer(&mut self, id: i64) -> Option<RowValues> {
        let pos = self.customer_pos.remove(&id)?;
        self.customer_ids.swap_remove(pos);
        if let Some(&moved) = self.customer_ids.get(pos) {
            self.customer_pos.insert(moved, pos);
        }
        self.customers.remove(&id)
    }

    /// Creates a product and its inventory rows in the live state and returns their
    /// row images (product first) so callers can emit inserts.
    pub(super) fn create_product(&mut self, created: NaiveDateTime) -> Vec<RowValues> {
        let id = next(&mut self.ids.product);
        let seller = self.rng.random_range(1..=self.ids.seller.max(1));
        let category = self.pick(&self.leaf_categories.clone());
        let name = format!("{} {}", self.pick(ADJECTIVES), self.pick(NOUNS));
        let euros = (self.rng.random_range(3.0f64.ln()..900.0f64.ln())).exp() as i64;
        let cents = if self.chance(0.7) {
            euros * 100 + 99
        } else {
            euros * 100
        };
        let attributes = format!(
            "{{\"color\": \"{}\", \"material\": \"{}\"}}",
            self.pick(COLORS),
            self.pick(MATERIALS)
        );
        let product = vec![
            ("id", Value::Int(id)),
            ("seller_id", Value::Int(seller)),
            ("category_id", Value::Int(category)),
            ("sku", text(format!("SKU-{id:06}"))),
            ("name", text(name)),
            ("price", Value::money(cents)),
            (
                "weight_kg",
                Value::Decimal {
                    unscaled: self.rng.random_range(50..25_000),
                    scale: 3,
                },
            ),
            ("active", Value::Bool(true)),
            ("attributes", Value::Json(attributes)),
            ("created_at", tz(created)),
            ("updated_at", tz(created)),
        ];
        self.products.insert(id, product.clone());
        let mut rows = vec![product];
        let n_wh = self.cfg.warehouses.clamp(1, WAREHOUSES.len());
        let home = (id as usize) % n_wh;
        for (w, (code, _)) in WAREHOUSES.iter().take(n_wh).enumerate() {
            if w != home && !self.chance(0.4) {
                continue;
            }
            let row = vec![
                ("product_id", Value::Int(id)),
                ("warehouse", text(*code)),
                ("quantity", Value::Int(self.rng.random_range(20..300))),
                ("reserved", Value::Int(0)),
                ("reorder_level", Value::Int(self.rng.random_range(10..30))),
                (
                    "bin_location",
                    text(format!(
                        "{}-{:02}-{}",
                        char::from(b'A' + self.rng.random_range(0..6u8)),
                        self.rng.random_range(1..40),
                        self.rng.random_range(1..6)
                    )),
                ),
                ("last_restock_at", tz(created)),
                ("updated_at", Value::Timestamp(created)),
            ];
            self.inventory.insert((id, code), row.clone());
            rows.push(row);
        }
        rows
    }

    /// Recomputes the Zipf CDF over `popularity` ranks.
    pub(super) fn rebuild_zipf(&mut self) {
        let mut acc = 0.0;
        self.zipf_cdf = (0..self.popularity.len())
            .map(|rank| {
                acc += 1.0 / ((rank + 1) as f64).powf(ZIPF_S);
                acc
            })
            .collect();
    }

    /// Samples a product id with Zipf-distributed popularity.
    pub(super) fn pick_product(&mut self) -> i64 {
        let total = self.zipf_cdf.last().copied().unwrap_or(1.0);
        let x = self.rng.random_range(0.0..total);
        let rank = self.zipf_cdf.partition_point(|&c| c <= x);
        self.popularity[rank.min(self.popularity.len() - 1)]
    }
}

fn category_row(
    id: i64,
    parent: Option<i64>,
    name: &str,
    slug: &str,
    path: &str,
    sort: i64,
    at: NaiveDateTime,
) -> RowValues {
    vec![
        ("id", Value::Int(id)),
        ("parent_id", parent.map_or(Value::Null, Value::Int)),
        ("name", text(name)),
        ("slug", text(slug)),
        ("path", text(path)),
        ("sort_order", Value::Int(sort)),
        ("created_at", tz(at)),
        ("updated_at", tz(at)),
    ]
}

fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}
