//! JSON-lines export: one `{"topic","partition","offset","key","value"}` object per
//! record, the format `lakehouse run bronze --from-file` ingests. Key and value are
//! embedded as JSON (they already are JSON documents), or `null`.

use crate::debezium::KafkaRecord;
use crate::debezium::json::{push_int, push_str};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Kafka's `Utils.murmur2` (the default partitioner's key hash).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        if rest.len() >= 3 {
            h ^= u32::from(rest[2]) << 16;
        }
        if rest.len() >= 2 {
            h ^= u32::from(rest[1]) << 8;
        }
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Partition the Kafka default partitioner picks for a key (null keys → 0 here,
/// since the sticky partitioner is not deterministic).
pub fn partition_for(key: Option<&[u8]>, partitions: u32) -> u32 {
    match key {
        Some(k) if partitions > 0 => ((murmur2(k) & 0x7fff_ffff) as u32) % partitions,
        _ => 0,
    }
}

/// Writes records as JSON lines, assigning partitions and per-partition offsets.
pub struct JsonlWriter<W: Write> {
    out: W,
    partitions: u32,
    /// Next offset per topic and partition.
    offsets: BTreeMap<String, Vec<u64>>,
    line: String,
}

impl<W: Write> JsonlWriter<W> {
    /// A writer spreading each topic over `partitions` partitions (at least 1).
    pub fn new(out: W, partitions: u32) -> Self {
        JsonlWriter {
            out,
            partitions: partitions.max(1),
            offsets: BTreeMap::new(),
            line: String::with_capacity(8192),
        }
    }

    /// Appends one record as a line.
    pub fn write_record(&mut self, rec: &KafkaRecord) -> io::Result<()> {
        let partition = partition_for(rec.key.as_deref(), self.partitions);
        let offsets = match self.offsets.get_mut(&rec.topic) {
            Some(o) => o,
            None => self
                .offsets
                .entry(rec.topic.clone())
                .or_insert_with(|| vec![0; self.partitions as usize]),
        };
        let slot = &mut offsets[partition as usize];
        let offset = *slot;
        *slot += 1;
        let line = &mut self.line;
        line.clear();
        line.push_str("{\"topic\":");
        push_str(line, &rec.topic);
        line.push_str(",\"partition\":");
        push_int(line, partition);
        line.push_str(",\"offset\":");
        push_int(line, offset);
        line.push_str(",\"key\":");
        push_embedded(line, rec.key.as_deref())?;
        line.push_str(",\"value\":");
        push_embedded(line, rec.value.as_deref())?;
        line.push_str("}\n");
        self.out.write_all(line.as_bytes())
    }

    /// Appends many records.
    pub fn write_all<'a>(
        &mut self,
        recs: impl IntoIterator<Item = &'a KafkaRecord>,
    ) -> io::Result<()> {
        recs.into_iter().try_for_each(|r| self.write_record(r))
    }

    /// Records written so far per topic, sorted by topic.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.offsets
            .iter()
            .map(|(t, o)| (t.clone(), o.iter().sum()))
            .collect()
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn push_embedded(line: &mut String, bytes: Option<&[u8]>) -> io::Result<()> {
    match bytes {
        Some(b) => {
            let s = std::str::from_utf8(b)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            line.push_str(s);
        }
        None => line.push_str("null"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn lines_have_per_partition_offsets() {
        let mut w = JsonlWriter::new(Vec::new(), 3);
        let rec = |k: &str| KafkaRecord {
            topic: "t".into(),
            key: Some(format!("{{\"id\":\"{k}\"}}").into_bytes()),
            value: None,
        };
        for k in ["a", "b", "a", "c", "a"] {
            w.write_record(&rec(k)).unwrap();
        }
        let out = String::from_utf8(w.into_inner()).unwrap();
        let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["value"].is_null());
            let p = v["partition"].as_u64().unwrap();
            seen.entry(p)
                .or_default()
                .push(v["offset"].as_u64().unwrap());
        }
        for offs in seen.values() {
            assert_eq!(*offs, (0..offs.len() as u64).collect::<Vec<_>>());
        }
    }
}
