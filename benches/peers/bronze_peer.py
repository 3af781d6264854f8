#!/usr/bin/env python3
"""Bronze peer: the Python consumer a team would write instead of `lakehouse run bronze`.

    bronze_peer.py IN.jsonl LAKE_ROOT [--flush-rows 100000] [--flush-bytes 134217728]

Reads the JSON lines the mock writes (`{"topic","partition","offset","key","value"}`,
key/value embedded JSON or JSON strings, see src/bronze/file.rs), unwraps each
Debezium envelope (schemas enabled) with the standard `json` module, decodes
the logical types the mock emits the way src/cdc/logical.rs does (Connect
Decimal from base64 with the schema's scale, io.debezium.time.Date /
Timestamp / MicroTimestamp / NanoTimestamp / Time*, strings as they are),
and appends the rows to `LAKE_ROOT/bronze/bronze_events` (the schema of
src/tables/bronze.rs: before/after/key as map<string,string>, raw key and
value bytes kept, partitioned by topic) with `deltalake.write_deltalake`,
one commit per batch of `--flush-rows` rows or `--flush-bytes` payload bytes
(our defaults), each carrying the file position as a Delta `txn` like ours.
Transaction BEGIN/END records and heartbeats are counted, not written.
Records that do not decode go to `bronze_dead_letters`.

Not done (ours does): resuming after the last committed line, Kafka, MySQL
schema-change records, schemaless envelopes, ExtractNewRecordState records.
"""

import argparse
import base64
import datetime as dt
import json
import os
import re
import sys
import time
import uuid
from json.decoder import scanstring

import pyarrow as pa
from deltalake import CommitProperties, Transaction, WriterProperties, write_deltalake

STRING_MAP = pa.map_(pa.string(), pa.string())
TS_UTC = pa.timestamp("us", tz="UTC")
EVENTS_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    ("kafka_timestamp", TS_UTC),
    pa.field("record_kind", pa.string(), nullable=False),
    ("op", pa.string()),
    ("connector", pa.string()),
    ("source_name", pa.string()),
    ("source_db", pa.string()),
    ("source_schema", pa.string()),
    ("source_table", pa.string()),
    ("source_lsn", pa.int64()),
    ("source_tx_id", pa.int64()),
    ("source_sequence", pa.string()),
    ("binlog_file", pa.string()),
    ("binlog_pos", pa.int64()),
    ("binlog_row", pa.int32()),
    ("server_id", pa.int64()),
    ("gtid", pa.string()),
    ("source_position", pa.decimal128(38, 0)),
    ("source_ts_ms", pa.int64()),
    ("event_ts_ms", pa.int64()),
    ("snapshot", pa.string()),
    ("tx_id", pa.string()),
    ("tx_total_order", pa.int64()),
    ("tx_collection_order", pa.int64()),
    ("key", STRING_MAP),
    ("before", STRING_MAP),
    ("after", STRING_MAP),
    ("raw_key", pa.binary()),
    ("raw_value", pa.binary()),
    pa.field("ingested_at", TS_UTC, nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
])
DEAD_LETTERS_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    ("kafka_timestamp", TS_UTC),
    ("raw_key", pa.binary()),
    ("raw_value", pa.binary()),
    pa.field("error_kind", pa.string(), nullable=False),
    pa.field("error", pa.string(), nullable=False),
    pa.field("failed_at", TS_UTC, nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
])
# The same Delta table properties and Parquet compression as ours (src/bronze/sink.rs).
EVENTS_CONFIG = {
    "delta.dataSkippingStatsColumns":
        "kafka_partition,kafka_offset,kafka_timestamp,record_kind,op,source_position,source_ts_ms,ingested_at"
}
WRITER = WriterProperties(compression="ZSTD", compression_level=1)

# ---------------------------------------------------------------- framing

_raw_decode = json.JSONDecoder().raw_decode
_ws = re.compile(r"[ \t\n\r]*")


def frame(line):
    """The members of the top-level object of `line` and the (start, end)
    span of each value, so embedded key/value JSON is kept byte for byte."""
    skip = _ws.match
    i = skip(line, 0).end()
    if line[i] != "{":
        raise ValueError("not a JSON object")
    members, spans = {}, {}
    i = skip(line, i + 1).end()
    if line[i] == "}":
        return members, spans
    while True:
        if line[i] != '"':
            raise ValueError(f"expected a member name at {i}")
        name, i = scanstring(line, i + 1)
        i = skip(line, i).end()
        if line[i] != ":":
            raise ValueError(f"expected ':' at {i}")
        i = skip(line, i + 1).end()
        value, end = _raw_decode(line, i)
        members[name] = value
        spans[name] = (i, end)
        i = skip(line, end).end()
        c = line[i]
        if c == ",":
            i = skip(line, i + 1).end()
        elif c == "}":
            return members, spans
        else:
            raise ValueError(f"expected ',' or '}}' at {i}")


def payload(members, spans, line, name):
    """(decoded JSON, raw bytes) of the key or value member."""
    v = members.get(name)
    if v is None:
        return None, None
    if isinstance(v, str):  # a JSON string holding the record's bytes
        return json.loads(v), v.encode()
    start, end = spans[name]
    return v, line[start:end].encode()


# ------------------------------------------------------- logical types

EPOCH = dt.datetime(1970, 1, 1)
PG_INFINITY = {9223372036825200000: "infinity", -9223372036832400000: "-infinity"}


def decimal_text(unscaled, scale):
    if scale <= 0:
        return str(unscaled * 10 ** -scale)
    sign = "-" if unscaled < 0 else ""
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def decimal_conv(scale):
    def conv(v):
        if isinstance(v, str):  # bytes: base64 big-endian two's complement
            return decimal_text(int.from_bytes(base64.b64decode(v), "big", signed=True), scale)
        # decimal.handling.mode=double/string or a JSON number
        return f"{float(v):.{scale}f}" if scale > 0 else str(int(v))
    return conv


def timestamp_conv(per_sec, digits):
    def conv(v):
        inf = PG_INFINITY.get(v)
        if inf is not None:
            return inf
        secs, frac = divmod(v, per_sec)
        t = EPOCH + dt.timedelta(seconds=secs)
        return f"{t:%Y-%m-%dT%H:%M:%S}.{frac * 10 ** digits // per_sec:0{digits}d}"
    return conv


def time_conv(per_sec, digits):
    def conv(v):
        secs, frac = divmod(v, per_sec)
        return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frac * 10 ** digits // per_sec:0{digits}d}"
    return conv


def date_conv(v):
    return (EPOCH + dt.timedelta(days=v)).strftime("%Y-%m-%d")


def bool_text(v):
    return "true" if v else "false"


def json_text(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


LOGICAL = {
    "io.debezium.time.Date": date_conv,
    "org.apache.kafka.connect.data.Date": date_conv,
    "io.debezium.time.Timestamp": timestamp_conv(1000, 3),
    "org.apache.kafka.connect.data.Timestamp": timestamp_conv(1000, 3),
    "io.debezium.time.MicroTimestamp": timestamp_conv(1_000_000, 6),
    "io.debezium.time.NanoTimestamp": timestamp_conv(1_000_000_000, 9),
    "io.debezium.time.Time": time_conv(1000, 3),
    "org.apache.kafka.connect.data.Time": time_conv(1000, 3),
    "io.debezium.time.MicroTime": time_conv(1_000_000, 6),
    "io.debezium.time.NanoTime": time_conv(1_000_000_000, 9),
}


def field_conv(field):
    """A function from the JSON value to its text, or None when the value is
    a string kept as it is (string, Uuid, Json, Enum, ZonedTimestamp, ...)."""
    name, ty = field.get("name"), field.get("type")
    if name == "org.apache.kafka.connect.data.Decimal":
        return decimal_conv(int(field.get("parameters", {}).get("scale", 0)))
    if name == "io.debezium.data.VariableScaleDecimal":
        return lambda v: decimal_text(
            int.from_bytes(base64.b64decode(v["value"]), "big", signed=True), v["scale"])
    if name in LOGICAL:
        return LOGICAL[name]
    if ty == "string":
        return None
    if ty in ("int8", "int16", "int32", "int64"):
        return str
    if ty == "boolean":
        return bool_text
    if ty in ("float", "double", "float32", "float64"):
        return repr
    if ty == "bytes":
        return None  # base64 as on the wire
    return json_text  # struct, array, map: compact JSON


def row_converter(struct):
    fields = [(f["field"], field_conv(f)) for f in struct["fields"]]

    def convert(row):
        out = []
        append = out.append
        get = row.get
        for name, conv in fields:
            v = get(name)
            append((name, v if v is None or conv is None else conv(v)))
        return out
    return convert


class Converters:
    """Row converters per Connect schema. A connector sends the same schema
    with every record of a table, so the last one per topic is kept and
    reused while the record's schema equals it."""

    def __init__(self):
        self.values = {}
        self.keys = {}

    def value(self, topic, schema):
        hit = self.values.get(topic)
        if hit is not None and hit[0] == schema:
            return hit[1], hit[2]
        by_field = {f["field"]: f for f in schema["fields"]}
        before = row_converter(by_field["before"]) if "before" in by_field else None
        after = row_converter(by_field["after"]) if "after" in by_field else None
        self.values[topic] = (schema, before, after)
        return before, after

    def key(self, topic, schema):
        hit = self.keys.get(topic)
        if hit is not None and hit[0] == schema:
            return hit[1]
        conv = row_converter(schema)
        self.keys[topic] = (schema, conv)
        return conv


# ------------------------------------------------------------ batches

class Batch:
    def __init__(self):
        self.cols = {f.name: [] for f in EVENTS_SCHEMA}
        self.dead = {f.name: [] for f in DEAD_LETTERS_SCHEMA}
        self.rows = 0
        self.dead_rows = 0
        self.bytes = 0
        self.records = 0
        self.last_line = None
        self.batch_id = str(uuid.uuid4())


def position(src):
    lsn = src.get("lsn")
    if lsn is not None:
        return lsn
    file = src.get("file")
    if file is None:
        return None
    try:
        n = int(file.rsplit(".", 1)[-1])
    except ValueError:
        return None
    return n * 10**16 + (src.get("pos") or 0) * 10**6 + (src.get("row") or 0)


NON_ROW = object()


def add_record(b, conv, topic, part, offset, members, spans, line):
    key, raw_key = payload(members, spans, line, "key")
    value, raw_value = payload(members, spans, line, "value")
    if value is not None and value.get("schema") is None and value.get("payload") is None \
            and set(value) <= {"schema", "payload"}:
        value = None  # legacy tombstone {"schema":null,"payload":null}
    key_row = None
    if key is not None:
        kp = key.get("payload")
        if kp is not None:
            key_row = conv.key(topic, key["schema"])(kp)
    c = b.cols
    if value is None:
        kind, op, src, p, tx, ets, before, after = "tombstone", None, {}, None, {}, None, None, None
    else:
        p = value["payload"]
        if "status" in p and "op" not in p:
            return NON_ROW  # transaction BEGIN/END
        if topic.startswith("__debezium-heartbeat"):
            return NON_ROW
        op = p["op"]
        if op == "m":
            return NON_ROW
        if op not in ("c", "u", "d", "r", "t"):
            raise ValueError(f"value.payload.op: unknown op {op!r}")
        src = p.get("source") or {}
        tx = p.get("transaction") or {}
        ets = p.get("ts_ms")
        before_conv, after_conv = conv.value(topic, value["schema"])
        b_row, a_row = p.get("before"), p.get("after")
        before = None if b_row is None else before_conv(b_row)
        after = None if a_row is None else after_conv(a_row)
        kind = "change"
    c["topic"].append(topic)
    c["kafka_partition"].append(part)
    c["kafka_offset"].append(offset)
    c["kafka_timestamp"].append(None)
    c["record_kind"].append(kind)
    c["op"].append(op)
    c["connector"].append(src.get("connector"))
    c["source_name"].append(src.get("name"))
    c["source_db"].append(src.get("db"))
    c["source_schema"].append(src.get("schema"))
    c["source_table"].append(src.get("table"))
    c["source_lsn"].append(src.get("lsn"))
    c["source_tx_id"].append(src.get("txId"))
    c["source_sequence"].append(src.get("sequence"))
    c["binlog_file"].append(src.get("file"))
    c["binlog_pos"].append(src.get("pos"))
    c["binlog_row"].append(src.get("row"))
    c["server_id"].append(src.get("server_id"))
    c["gtid"].append(src.get("gtid"))
    c["source_position"].append(position(src) if src else None)
    c["source_ts_ms"].append(src.get("ts_ms"))
    c["event_ts_ms"].append(ets)
    snap = src.get("snapshot")
    c["snapshot"].append(("true" if snap else "false") if isinstance(snap, bool) else snap)
    c["tx_id"].append(tx.get("id"))
    c["tx_total_order"].append(tx.get("total_order"))
    c["tx_collection_order"].append(tx.get("data_collection_order"))
    c["key"].append(key_row)
    c["before"].append(before)
    c["after"].append(after)
    c["raw_key"].append(raw_key)
    c["raw_value"].append(raw_value)
    c["ingested_at"].append(time.time_ns() // 1000)
    c["batch_id"].append(b.batch_id)
    b.rows += 1
    return None


def dead_letter(b, topic, part, offset, raw_key, raw_value, kind, message):
    d = b.dead
    d["topic"].append(topic)
    d["kafka_partition"].append(part)
    d["kafka_offset"].append(offset)
    d["kafka_timestamp"].append(None)
    d["raw_key"].append(raw_key)
    d["raw_value"].append(raw_value)
    d["error_kind"].append(kind)
    d["error"].append(message)
    d["failed_at"].append(time.time_ns() // 1000)
    d["batch_id"].append(b.batch_id)
    b.dead_rows += 1


def flush(b, lake, app_id):
    if b.last_line is None:
        return
    props = CommitProperties(
        app_transactions=[Transaction(app_id, b.last_line)],
        custom_metadata={"lakehouse.batch_id": b.batch_id},
    )
    events = os.path.join(lake, "bronze", "bronze_events")
    dead = os.path.join(lake, "bronze", "bronze_dead_letters")
    if b.rows:
        table = pa.Table.from_pydict(b.cols, schema=EVENTS_SCHEMA)
        write_deltalake(events, table, mode="append", partition_by=["topic"],
                        configuration=EVENTS_CONFIG, writer_properties=WRITER,
                        commit_properties=props)
        props = None
    if b.dead_rows:
        table = pa.Table.from_pydict(b.dead, schema=DEAD_LETTERS_SCHEMA)
        write_deltalake(dead, table, mode="append", writer_properties=WRITER,
                        commit_properties=props)
        props = None
    if props is not None:  # nothing but non-row records: still record the position
        write_deltalake(events, EVENTS_SCHEMA.empty_table(), mode="append",
                        partition_by=["topic"], configuration=EVENTS_CONFIG,
                        commit_properties=props)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("lake")
    ap.add_argument("--flush-rows", type=int, default=100_000)
    ap.add_argument("--flush-bytes", type=int, default=128 * 1024 * 1024)
    args = ap.parse_args()

    app_id = "lakehouse-file:" + os.path.realpath(args.input)
    conv = Converters()
    started = time.monotonic()
    totals = {"records": 0, "rows": 0, "dead": 0, "non_row": 0, "batches": 0}
    b = Batch()
    with open(args.input, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            b.records += 1
            b.last_line = line_no
            try:
                members, spans = frame(line)
                topic = members["topic"]
                if not isinstance(topic, str) or not topic:
                    raise ValueError("missing \"topic\"")
            except (ValueError, KeyError, IndexError) as e:
                dead_letter(b, f"file:{args.input}", 0, line_no, None, line.encode(),
                            "bad_line", f"{args.input}:{line_no}: {e}")
            else:
                part = members.get("partition", 0)
                offset = members.get("offset", line_no)
                b.bytes += sum(e - s for n, (s, e) in spans.items() if n in ("key", "value"))
                try:
                    if add_record(b, conv, topic, part, offset, members, spans, line) is NON_ROW:
                        totals["non_row"] += 1
                except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
                    _, raw_key = payload(members, spans, line, "key")
                    _, raw_value = payload(members, spans, line, "value")
                    dead_letter(b, topic, part, offset, raw_key, raw_value, "decode",
                                f"{type(e).__name__}: {e}")
            if b.rows >= args.flush_rows or b.bytes >= args.flush_bytes:
                flush(b, args.lake, app_id)
                totals["rows"] += b.rows
                totals["dead"] += b.dead_rows
                totals["records"] += b.records
                totals["batches"] += 1
                b = Batch()
    flush(b, args.lake, app_id)
    totals["rows"] += b.rows
    totals["dead"] += b.dead_rows
    totals["records"] += b.records
    totals["batches"] += b.last_line is not None
    print(f"bronze peer: {totals['records']} records ({totals['rows']} rows, {totals['dead']} dead letters, "
          f"{totals['non_row']} non-row) in {time.monotonic() - started:.2f}s, {totals['batches']} batches",
          file=sys.stderr)


if __name__ == "__main__":
    main()
