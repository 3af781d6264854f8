//! Order lifecycle: arrival (optionally with a customer signup), payment, cancellation,
//! shipping, carrier scans, delivery and returns.

use super::names::{HUBS, WAREHOUSES};
use super::{Event, Simulator, next};
use crate::model::{RowValues, Table, Value, get, set};
use chrono::{Datelike, NaiveDateTime, NaiveTime, TimeDelta, Weekday};
use rand::Rng;

/// Carrier scan kinds scheduled between shipping and delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Parcel seen at a sorting hub.
    InTransit,
    /// Parcel loaded for final delivery.
    OutForDelivery,
}

/// Live state of an order that still has lifecycle steps ahead.
#[derive(Debug)]
pub struct OrderState {
    row: RowValues,
    customer_id: i64,
    /// Item rows with the warehouse they were picked from; `None` once deleted.
    items: Vec<(Option<RowValues>, &'static str)>,
    payment: Option<RowValues>,
    pay_attempts: u32,
    shipment: Option<RowValues>,
    scans: i64,
}

/// `(carrier, extra transit days, probability of a late delivery)`.
const CARRIERS: &[(&str, i64, f64)] = &[
    ("dhl", 0, 0.08),
    ("ups", 0, 0.06),
    ("fedex", 0, 0.07),
    ("dpd", 1, 0.14),
    ("postnl", 0, 0.12),
];

pub(super) fn tz(t: NaiveDateTime) -> Value {
    Value::TimestampTz(t.and_utc())
}

pub(super) fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// A `numeric(_, 2)` value.
pub(super) fn dec2(unscaled: i128) -> Value {
    Value::Decimal { unscaled, scale: 2 }
}

pub(super) fn unscaled(row: &RowValues, col: &str) -> i128 {
    get(row, col).and_then(Value::as_unscaled).unwrap_or(0)
}

pub(super) fn int(row: &RowValues, col: &str) -> i64 {
    get(row, col).and_then(Value::as_int).unwrap_or(0)
}

/// Moves `t` off Sundays (carriers do not deliver then).
fn skip_sunday(t: NaiveDateTime) -> NaiveDateTime {
    if t.weekday() == Weekday::Sun {
        t + TimeDelta::days(1)
    } else {
        t
    }
}

impl Simulator {
    /// A new order: maybe a new customer first, then the order, its items and the
    /// inventory decrements, all in one transaction.
    pub(super) fn on_arrival(&mut self) {
        let now = self.clock;
        let customer_id = if self.customer_ids.is_empty() || self.chance(0.18) {
            let row = self.new_customer_row(now);
            self.add_customer(row.clone());
            let id = int(&row, "id");
            self.insert(Table::Customers, row);
            id
        } else {
            self.pick(&self.customer_ids.clone()[..])
        };
        let n_items = 1 + (0..4).take_while(|_| self.chance(0.45)).count();
        let mut products: Vec<i64> = Vec::with_capacity(n_items);
        for _ in 0..n_items * 3 {
            if products.len() == n_items {
                break;
            }
            let p = self.pick_product();
            let active = self
                .products
                .get(&p)
                .and_then(|r| get(r, "active"))
                .is_some_and(|v| *v == Value::Bool(true));
            if active && !products.contains(&p) {
                products.push(p);
            }
        }
        if products.is_empty() {
            products.push(self.popularity[0]);
        }
        let order_id = next(&mut self.ids.order);
        let mut items: Vec<(RowValues, &'static str)> = Vec::with_capacity(products.len());
        let mut subtotal: i128 = 0;
        for (line, &pid) in products.iter().enumerate() {
            let Some(prod) = self.products.get(&pid) else {
                continue;
            };
            let price = unscaled(prod, "price");
            let sku = get(prod, "sku").cloned().unwrap_or(Value::Null);
            let category = int(prod, "category_id");
            // Books carry the reduced VAT rate.
            let books = self
                .categories
                .get(&category)
                .and_then(|c| get(c, "path"))
                .and_then(Value::as_text)
                .is_some_and(|p| p.starts_with("/books"));
            let qty = 1 + (0..3).take_while(|_| self.chance(0.25)).count() as i64;
            let discount = if self.chance(0.15) {
                price * i128::from(qty) * self.rng.random_range(5..25) / 100
            } else {
                0
            };
            subtotal += price * i128::from(qty) - discount;
            let row = vec![
                ("order_id", Value::Int(order_id)),
                ("line_no", Value::Int(line as i64 + 1)),
                ("product_id", Value::Int(pid)),
                ("sku", sku),
                ("quantity", Value::Int(qty)),
                ("unit_price", dec2(price)),
                ("discount", dec2(discount)),
                (
                    "tax_rate",
                    Value::Decimal {
                        unscaled: if books { 900 } else { 2100 },
                        scale: 4,
                    },
                ),
                ("created_at", tz(now)),
            ];
            items.push((row, WAREHOUSES[0].0));
        }
        let shipping: i128 = if subtotal >= 5_000 { 0 } else { 495 };
        let voucher: i128 = if self.chance(0.1) {
            self.pick(&[500, 1000, 1500]).min(subtotal)
        } else {
            0
        };
        let order = vec![
            ("id", Value::Int(order_id)),
            ("customer_id", Value::Int(customer_id)),
            ("status", text("created")),
            ("order_date", Value::Date(now.date())),
            ("currency", text("EUR")),
            ("total", dec2(subtotal - voucher + shipping)),
            ("discount", dec2(voucher)),
            ("shipping_cost", dec2(shipping)),
            ("created_at", tz(now)),
            ("updated_at", tz(now)),
        ];
        self.insert(Table::Orders, order.clone());
        for (row, _) in &items {
            self.insert(Table::OrderItems, row.clone());
        }
        // Stock is decremented after the items are written, as the shop's code does.
        for (row, wh) in &mut items {
            *wh = self.take_stock(int(row, "product_id"), int(row, "quantity"));
        }
        *self.open_orders.entry(customer_id).or_insert(0) += 1;
        self.orders.insert(
            order_id,
            OrderState {
                row: order,
                customer_id,
                items: items.into_iter().map(|(r, w)| (Some(r), w)).collect(),
                payment: None,
                pay_attempts: 0,
                shipment: None,
                scans: 0,
            },
        );
        if self.chance(0.94) {
            let at = now + self.minutes(1.0, 120.0);
            self.schedule(at, Event::Pay(order_id));
        } else {
            let at = now + self.minutes(30.0, 2880.0);
            self.schedule(at, Event::Cancel(order_id));
        }
    }

    fn set_order_status(&mut self, order_id: i64, status: &str) {
        let now = self.clock;
        let Some(st) = self.orders.get_mut(&order_id) else {
            return;
        };
        let before = st.row.clone();
        set(&mut st.row, "status", text(status));
        set(&mut st.row, "updated_at", tz(now));
        let after = st.row.clone();
        self.update(Table::Orders, before, after);
    }

    fn order_status(&self, order_id: i64) -> Option<&str> {
        self.orders
            .get(&order_id)
            .and_then(|st| get(&st.row, "status"))
            .and_then(Value::as_text)
    }

    pub(super) fn on_pay(&mut self, order_id: i64) {
        if self.order_status(order_id) != Some("created") {
            return;
        }
        let now = self.clock;
        let failed = self.chance(0.04);
        let method = match self.rng.random_range(0..100) {
            0..55 => "card",
            55..80 => "paypal",
            80..95 => "bank_transfer",
            _ => "gift_card",
        };
        let Some(st) = self.orders.get_mut(&order_id) else {
            return;
        };
        st.pay_attempts += 1;
        let attempts = st.pay_attempts;
        let amount = unscaled(&st.row, "total");
        let id = next(&mut self.ids.payment);
        let payment = vec![
            ("id", Value::Int(id)),
            ("order_id", Value::Int(order_id)),
            ("method", text(method)),
            ("provider_ref", self.new_uuid()),
            ("amount", dec2(amount)),
            ("currency", text("EUR")),
            ("status", text(if failed { "failed" } else { "captured" })),
            ("paid_at", if failed { Value::Null } else { tz(now) }),
            ("created_at", tz(now)),
            ("updated_at", tz(now)),
        ];
        self.insert(Table::Payments, payment.clone());
        if let Some(st) = self.orders.get_mut(&order_id) {
            st.payment = Some(payment);
        }
        if failed {
            let at = now + self.minutes(5.0, 90.0);
            let event = if attempts >= 3 {
                Event::Cancel(order_id)
            } else {
                Event::Pay(order_id)
            };
            self.schedule(at, event);
            return;
        }
        self.set_order_status(order_id, "paid");
        if self.chance(0.02) {
            let at = now + self.minutes(60.0, 1440.0);
            self.schedule(at, Event::Cancel(order_id));
        } else {
            // Warehouses do not ship on Sundays; handling takes 4 h – 2 days.
            let at = skip_sunday(now + self.minutes(240.0, 2880.0));
            self.schedule(at, Event::Ship(order_id));
        }
    }

    /// Cancellation: status update, refund if paid, some items deleted, stock returned.
    pub(super) fn on_cancel(&mut self, order_id: i64) {
        let was_paid = match self.order_status(order_id) {
            Some("created") => false,
            Some("paid") => true,
            _ => return,
        };
        let now = self.clock;
        self.set_order_status(order_id, "cancelled");
        if was_paid
            && let Some(p) = self
                .orders
                .get_mut(&order_id)
                .and_then(|st| st.payment.as_mut())
        {
            let before = p.clone();
            set(p, "status", text("refunded"));
            set(p, "updated_at", tz(now));
            let after = p.clone();
            self.update(Table::Payments, before, after);
        }
        let Some(mut st) = self.orders.remove(&order_id) else {
            return;
        };
        for (item, wh) in &mut st.items {
            let Some(row) = item.as_ref() else { continue };
            let (pid, qty) = (int(row, "product_id"), int(row, "quantity"));
            if self.chance(0.5)
                && let Some(row) = item.take()
            {
                self.delete(Table::OrderItems, row);
            }
            self.adjust_stock(pid, wh, qty);
        }
        self.close_order(st.customer_id);
    }

    pub(super) fn on_ship(&mut self, order_id: i64) {
        if self.order_status(order_id) != Some("paid") {
            return;
        }
        let now = self.clock;
        let (carrier, extra, late_p) = self.pick(CARRIERS);
        let (service, base_days) = match self.rng.random_range(0..100) {
            0..60 => ("standard", 3),
            60..85 => ("express", 1),
            _ => ("economy", 6),
        };
        let promised = (now + TimeDelta::days(base_days + extra)).date();
        let late = if self.chance(late_p) {
            self.rng.random_range(1..5)
        } else {
            0
        };
        let early = i64::from(base_days > 1 && self.chance(0.3));
        let transit = base_days + extra + late - early;
        let day = (now + TimeDelta::days(transit)).date();
        let deliver_at = skip_sunday(day.and_time(NaiveTime::MIN) + self.minutes(540.0, 1140.0));
        let deliver_at = deliver_at.max(now + TimeDelta::hours(6));
        let warehouse = self
            .orders
            .get(&order_id)
            .and_then(|st| st.items.first().map(|(_, w)| *w))
            .unwrap_or(WAREHOUSES[0].0);
        let id = next(&mut self.ids.shipment);
        let tracking = format!(
            "{}{:010}",
            carrier.to_ascii_uppercase(),
            self.rng.random_range(0..10_000_000_000u64)
        );
        let shipment = vec![
            ("id", Value::Int(id)),
            ("order_id", Value::Int(order_id)),
            ("carrier", text(carrier)),
            ("service", text(service)),
            ("tracking_number", text(tracking)),
            ("status", text("label_created")),
            ("warehouse", text(warehouse)),
            ("promised_date", Value::Date(promised)),
            ("shipped_at", tz(now)),
            ("delivered_at", Value::Null),
            ("created_at", tz(now)),
            ("updated_at", tz(now)),
        ];
        self.set_order_status(order_id, "shipped");
        self.insert(Table::Shipments, shipment.clone());
        let city = WAREHOUSES
            .iter()
            .find(|(c, _)| *c == warehouse)
            .map_or("Amsterdam", |(_, city)| *city);
        if let Some(st) = self.orders.get_mut(&order_id) {
            st.shipment = Some(shipment);
        }
        self.shipment_event(order_id, "label_created", city);
        // Scans: one hub scan per ~2 transit days, out-for-delivery that morning.
        let hubs = 1 + (deliver_at - now).num_days().max(0) / 2;
        for h in 0..hubs {
            let at = now + TimeDelta::hours(2 + h * 40) + self.minutes(0.0, 300.0);
            if at < deliver_at - TimeDelta::hours(3) {
                self.schedule(at, Event::Scan(order_id, Scan::InTransit));
            }
        }
        let ofd = deliver_at - self.minutes(60.0, 240.0);
        self.schedule(ofd.max(now), Event::Scan(order_id, Scan::OutForDelivery));
        self.schedule(deliver_at, Event::Deliver(order_id));
    }

    pub(super) fn on_scan(&mut self, order_id: i64, scan: Scan) {
        if self.order_status(order_id) != Some("shipped") {
            return;
        }
        let (status, location) = match scan {
            Scan::InTransit => ("in_transit", self.pick(HUBS).to_string()),
            Scan::OutForDelivery => ("out_for_delivery", self.customer_city(order_id)),
        };
        self.set_shipment_status(order_id, status, false);
        self.shipment_event(order_id, status, &location);
    }

    pub(super) fn on_deliver(&mut self, order_id: i64) {
        if self.order_status(order_id) != Some("shipped") {
            return;
        }
        let city = self.customer_city(order_id);
        self.set_shipment_status(order_id, "delivered", true);
        self.shipment_event(order_id, "delivered", &city);
        self.set_order_status(order_id, "delivered");
        if self.chance(0.03) {
            let at = self.clock + self.minutes(3.0 * 1440.0, 14.0 * 1440.0);
            self.schedule(at, Event::Return(order_id));
        } else if let Some(st) = self.orders.remove(&order_id) {
            self.close_order(st.customer_id);
        }
    }

    pub(super) fn on_return(&mut self, order_id: i64) {
        if self.order_status(order_id) != Some("delivered") {
            return;
        }
        let city = self.customer_city(order_id);
        self.set_shipment_status(order_id, "returned", false);
        self.shipment_event(order_id, "returned", &city);
        if let Some(st) = self.orders.remove(&order_id) {
            self.close_order(st.customer_id);
        }
    }

    fn close_order(&mut self, customer_id: i64) {
        if let Some(n) = self.open_orders.get_mut(&customer_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open_orders.remove(&customer_id);
            }
        }
    }

    fn customer_city(&self, order_id: i64) -> String {
        self.orders
            .get(&order_id)
            .and_then(|st| self.customers.get(&st.customer_id))
            .and_then(|c| get(c, "city"))
            .and_then(Value::as_text)
            .unwrap_or("Utrecht")
            .to_string()
    }

    fn set_shipment_status(&mut self, order_id: i64, status: &str, delivered: bool) {
        let now = self.clock;
        let Some(ship) = self
            .orders
            .get_mut(&order_id)
            .and_then(|s| s.shipment.as_mut())
        else {
            return;
        };
        let before = ship.clone();
        set(ship, "status", text(status));
        if delivered {
            set(ship, "delivered_at", tz(now));
        }
        set(ship, "updated_at", tz(now));
        let after = ship.clone();
        self.update(Table::Shipments, before, after);
    }

    fn shipment_event(&mut self, order_id: i64, status: &str, location: &str) {
        let now = self.clock;
        let Some(st) = self.orders.get_mut(&order_id) else {
            return;
        };
        let Some(shipment_id) = st.shipment.as_ref().map(|s| int(s, "id")) else {
            return;
        };
        st.scans += 1;
        let seq = st.scans;
        let id = next(&mut self.ids.shipment_event);
        // Carrier feeds report local (CET) wall-clock time without a zone.
        let local = now + TimeDelta::hours(1) - self.minutes(0.0, 20.0);
        let scanner = self.rng.random_range(1..400);
        let row = vec![
            ("id", Value::Int(id)),
            ("shipment_id", Value::Int(shipment_id)),
            ("sequence_no", Value::Int(seq)),
            ("status", text(status)),
            ("location", text(location)),
            ("event_ts", Value::Timestamp(local)),
            (
                "details",
                Value::Json(format!(
                    "{{\"hub\": \"{location}\", \"scanner\": \"S-{scanner}\"}}"
                )),
            ),
            ("recorded_at", tz(now)),
        ];
        self.insert(Table::ShipmentEvents, row);
    }
}
