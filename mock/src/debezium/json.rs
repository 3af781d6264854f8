//! Hand-rolled JSON writing primitives for the hot path (no `serde_json::Value` trees).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};

/// Appends an integer.
#[inline]
pub fn push_int<I: itoa::Integer>(buf: &mut String, v: I) {
    buf.push_str(itoa::Buffer::new().format(v));
}

/// Appends `s` as a quoted JSON string, escaping as needed.
pub fn push_str(buf: &mut String, s: &str) {
    buf.push('"');
    push_escaped(buf, s);
    buf.push('"');
}

/// Appends the escaped body of a JSON string (without quotes).
pub fn push_escaped(buf: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        buf.push_str(&s[start..i]);
        if esc.is_empty() {
            buf.push_str("\\u00");
            buf.push(hex_digit(b >> 4));
            buf.push(hex_digit(b & 0xf));
        } else {
            buf.push_str(esc);
        }
        start = i + 1;
    }
    buf.push_str(&s[start..]);
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

/// Minimal big-endian two's-complement bytes of `v`, exactly as Java's
/// `BigInteger.toByteArray()` produces them (which is what Kafka Connect's `Decimal`
/// logical type serialises): `0` → `[0x00]`, `128` → `[0x00, 0x80]`, `-1` → `[0xff]`.
pub fn decimal_bytes(v: i128) -> ([u8; 16], usize) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    (bytes, start)
}

/// Appends the base64 (standard alphabet, padded) of a decimal's unscaled value,
/// as JsonConverter does with `decimal.format=BASE64`.
pub fn push_decimal_base64(buf: &mut String, unscaled: i128) {
    let (bytes, start) = decimal_bytes(unscaled);
    STANDARD.encode_string(&bytes[start..], buf);
}

/// Decodes a JsonConverter BASE64 decimal back to its unscaled value.
pub fn decode_decimal_base64(s: &str) -> Option<i128> {
    let bytes = STANDARD.decode(s).ok()?;
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
    let mut full = [fill; 16];
    full[16 - bytes.len()..].copy_from_slice(&bytes);
    Some(i128::from_be_bytes(full))
}

/// Days since the Unix epoch (`io.debezium.time.Date`).
pub fn epoch_days(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - 719_163
}

/// Microseconds since the Unix epoch, reading a naive timestamp as UTC
/// (`io.debezium.time.MicroTimestamp`).
pub fn epoch_micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

fn push_2(buf: &mut String, v: u32) {
    buf.push(char::from(b'0' + (v / 10 % 10) as u8));
    buf.push(char::from(b'0' + (v % 10) as u8));
}

/// Appends a `timestamptz` as `io.debezium.time.ZonedTimestamp` renders it for a
/// Postgres column of default precision 6: `"2024-01-01T10:00:00.123456Z"`.
pub fn push_zoned_timestamp(buf: &mut String, t: &DateTime<Utc>) {
    let n = t.naive_utc();
    buf.push('"');
    let year = n.year();
    if (0..10_000).contains(&year) {
        let y = year as u32;
        push_2(buf, y / 100);
        push_2(buf, y % 100);
    } else {
        push_int(buf, year);
    }
    buf.push('-');
    push_2(buf, n.month());
    buf.push('-');
    push_2(buf, n.day());
    buf.push('T');
    push_2(buf, n.hour());
    buf.push(':');
    push_2(buf, n.minute());
    buf.push(':');
    push_2(buf, n.second());
    buf.push('.');
    let micros = n.nanosecond() / 1_000 % 1_000_000;
    push_2(buf, micros / 10_000);
    push_2(buf, micros / 100 % 100);
    push_2(buf, micros % 100);
    buf.push_str("Z\"");
}

/// Appends a UUID in canonical lowercase 8-4-4-4-12 form, quoted.
pub fn push_uuid(buf: &mut String, v: u128) {
    buf.push('"');
    let bytes = v.to_be_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf.push('-');
        }
        buf.push(hex_digit(b >> 4));
        buf.push(hex_digit(*b));
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bytes_match_java_big_integer() {
        let cases: &[(i128, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x00, 0x80]),
            (255, &[0x00, 0xff]),
            (256, &[0x01, 0x00]),
            (-1, &[0xff]),
            (-128, &[0x80]),
            (-129, &[0xff, 0x7f]),
            (1999, &[0x07, 0xcf]),
        ];
        for (v, want) in cases {
            let (b, s) = decimal_bytes(*v);
            assert_eq!(&b[s..], *want, "value {v}");
        }
    }

    #[test]
    fn decimal_base64_round_trip() {
        for v in [
            0i128,
            1,
            -1,
            99,
            -99,
            1999,
            -1999,
            12_345_678_901,
            -12_345_678_901,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::MAX,
            i128::MIN,
        ] {
            let mut s = String::new();
            push_decimal_base64(&mut s, v);
            assert_eq!(decode_decimal_base64(&s), Some(v), "{v} -> {s}");
        }
        let mut s = String::new();
        push_decimal_base64(&mut s, 0);
        assert_eq!(s, "AA==");
    }

    #[test]
    fn escapes_control_characters() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn time_formats() {
        let t = NaiveDate::from_ymd_opt(2024, 3, 9)
            .unwrap()
            .and_hms_micro_opt(7, 5, 3, 120)
            .unwrap();
        let mut s = String::new();
        push_zoned_timestamp(&mut s, &t.and_utc());
        assert_eq!(s, "\"2024-03-09T07:05:03.000120Z\"");
        assert_eq!(epoch_days(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
        assert_eq!(
            epoch_days(NaiveDate::from_ymd_opt(1969, 12, 31).unwrap()),
            -1
        );
        assert_eq!(epoch_micros(t), t.and_utc().timestamp_micros());
        let mut u = String::new();
        push_uuid(&mut u, 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(u, "\"01234567-89ab-cdef-0011-223344556677\"");
    }
}
