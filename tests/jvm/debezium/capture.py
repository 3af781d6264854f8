#!/usr/bin/env python3
"""The Postgres scenarios of the Debezium fixtures: DDL, DML, connector
settings and the values a correct decoder must produce (the canonical text of
src/cdc/logical.rs). Driven by capture.sh; standard library only.

  capture.py sql NAME                SQL for a step (ddl, snapshot, types_stream,
                                     cdc_stream) on stdout
  capture.py connector NAME K=V...   connector properties of a capture on stdout
  capture.py counts                  `topic count` lines a complete capture has
  capture.py convert OUT_DIR DUMP... ConsoleConsumer dumps -> fixture .jsonl
                                     files, expected.json, and a check that the
                                     records decode to the expected values

Every value below is written twice on purpose: as the SQL literal inserted and
as the text expected after Debezium and the decoder. `verify` decodes every
captured record with a small reference implementation of the decoder's rules
and compares it with these expectations, so a fixture that does not match its
README fails the capture instead of being written.
"""

import base64
import json
import math
import struct
import sys
from decimal import Decimal
from pathlib import Path

DB = "fixtures"
TYPES_TABLE = "all_types"
TOAST_BODY = "0123456789abcdef" * 256  # 4096 chars, stored out of line (STORAGE EXTERNAL)
PLACEHOLDER = "__debezium_unavailable_value"

# --- connectors -----------------------------------------------------------------

COMMON = {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "tasks.max": "1",
    "database.hostname": "127.0.0.1",
    "database.user": "postgres",
    "database.password": "postgres",
    "database.dbname": DB,
    "plugin.name": "pgoutput",
    "publication.autocreate.mode": "filtered",
    "snapshot.mode": "initial",
}

# The three type captures differ in the settings that change value encodings.
TYPE_MODES = {
    "precise": {"decimal.handling.mode": "precise"},
    "string": {"decimal.handling.mode": "string", "interval.handling.mode": "string"},
    "double": {"decimal.handling.mode": "double", "time.precision.mode": "connect"},
}

CONNECTORS = {}
for _mode, _extra in TYPE_MODES.items():
    CONNECTORS[f"pg_types_{_mode}"] = {
        **COMMON,
        "name": f"pg_types_{_mode}",
        "topic.prefix": f"pgtypes_{_mode}",
        "slot.name": f"pgtypes_{_mode}",
        "publication.name": f"pgtypes_{_mode}",
        "table.include.list": f"public.{TYPES_TABLE}",
        **_extra,
    }
CONNECTORS["pg_cdc"] = {
    **COMMON,
    "name": "pg_cdc",
    "topic.prefix": "pgcdc",
    "slot.name": "pgcdc",
    "publication.name": "pgcdc",
    "table.include.list": "public.cdc_full,public.cdc_default",
    "decimal.handling.mode": "precise",
    "skipped.operations": "none",
    "heartbeat.interval.ms": "1000",
    "provide.transaction.metadata": "true",
}

# --- the types table ------------------------------------------------------------------
#
# (column, SQL type). A value is (SQL literal, expected) where expected is the
# canonical text, None for NULL, or {mode: text} when the connector settings
# change it.

TYPE_COLUMNS = [
    ("id", "int PRIMARY KEY"),
    ("c_smallint", "smallint"),
    ("c_bigint", "bigint"),
    ("c_bool", "boolean"),
    ("c_real", "real"),
    ("c_double", "double precision"),
    ("c_numeric", "numeric(10,2)"),
    ("c_numeric_var", "numeric"),
    ("c_varchar", "varchar(20)"),
    ("c_char", "char(5)"),
    ("c_text", "text"),
    ("c_uuid", "uuid"),
    ("c_json", "json"),
    ("c_jsonb", "jsonb"),
    ("c_enum", "mood"),
    ("c_int_arr", "int[]"),
    ("c_text_arr", "text[]"),
    ("c_interval", "interval"),
    ("c_tstz", "timestamptz"),
    ("c_ts", "timestamp"),
    ("c_ts3", "timestamp(3)"),
    ("c_date", "date"),
    ("c_time", "time"),
    ("c_time3", "time(3)"),
    ("c_timetz", "timetz"),
    ("c_bytea", "bytea"),
    ("c_bits", "bit(12)"),
    ("c_xml", "xml"),
    ("c_inet", "inet"),
]


def micro_duration(years, months, days, hours, minutes, seconds):
    """io.debezium.time.MicroDuration.durationMicros as Debezium computes it
    (double arithmetic, 365.25/12 days a month, truncated to a long)."""
    days_per_month = 365.25 / 12
    n_days = (years * 12 + months) * days_per_month + days
    n_secs = ((n_days * 24 + hours) * 60 + minutes) * 60 + seconds
    return str(int(n_secs * 1e6))


ROW_TYPICAL = {
    "c_smallint": ("42", "42"),
    "c_bigint": ("9007199254740993", "9007199254740993"),  # 2^53 + 1: not a double
    "c_bool": ("true", "true"),
    "c_real": ("3.14", "3.14"),
    "c_double": ("2.718281828459045", "2.718281828459045"),
    "c_numeric": ("12.5", {"precise": "12.50", "string": "12.50", "double": "12.5"}),
    # precise: Debezium sends 1.50 as {scale 1, value 15} (the trailing zero
    # is not kept), string mode keeps the text 1.50
    "c_numeric_var": ("1.50", {"precise": "1.5", "string": "1.50", "double": "1.5"}),
    "c_varchar": ("'héllo wörld'", "héllo wörld"),
    "c_char": ("'ab'", "ab   "),
    "c_text": ("E'line1\\nline2 \"q\" \\\\ \\t end'", 'line1\nline2 "q" \\ \t end'),
    "c_uuid": ("'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "c_json": ("'{\"b\": 1,  \"a\": [1, 2]}'", '{"b": 1,  "a": [1, 2]}'),
    "c_jsonb": ("'{\"b\": 1,  \"a\": [1, 2]}'", '{"a": [1, 2], "b": 1}'),
    "c_enum": ("'happy'", "happy"),
    "c_int_arr": ("'{1,2,3}'", "[1,2,3]"),
    "c_text_arr": ("'{\"a\",\"b c\",\"with,comma\",\"q\\\"uote\"}'", '["a","b c","with,comma","q\\"uote"]'),
    "c_interval": (
        "'1 year 2 months 3 days 04:05:06.789'",
        {
            "precise": micro_duration(1, 2, 3, 4, 5, 6.789),
            "string": "P1Y2M3DT4H5M6.789S",
            "double": micro_duration(1, 2, 3, 4, 5, 6.789),
        },
    ),
    "c_tstz": ("'2024-03-05 10:11:12.345678+02'", "2024-03-05T08:11:12.345678Z"),
    "c_ts": (
        "'2024-03-05 10:11:12.345678'",
        {"precise": "2024-03-05T10:11:12.345678", "string": "2024-03-05T10:11:12.345678",
         "double": "2024-03-05T10:11:12.345"},
    ),
    "c_ts3": ("'2024-03-05 10:11:12.345'", "2024-03-05T10:11:12.345"),
    "c_date": ("'2024-02-29'", "2024-02-29"),
    "c_time": (
        "'13:14:15.123456'",
        {"precise": "13:14:15.123456", "string": "13:14:15.123456", "double": "13:14:15.123"},
    ),
    "c_time3": ("'13:14:15.123'", "13:14:15.123"),
    "c_timetz": ("'13:14:15.5+02'", "11:14:15.5Z"),
    "c_bytea": ("'\\xdeadbeef00'", "3q2+7wA="),
    "c_bits": ("B'000000000101'", "5"),
    "c_xml": ("'<a b=\"1\">x</a>'", '<a b="1">x</a>'),
    "c_inet": ("'192.168.0.1/24'", "192.168.0.1/24"),
}

ROW_EDGE = {
    "c_smallint": ("-32768", "-32768"),
    "c_bigint": ("-9223372036854775808", "-9223372036854775808"),
    "c_bool": ("false", "false"),
    "c_real": ("-0.125", "-0.125"),
    "c_double": ("-1.5e-10", "-1.5E-10"),  # Java's Double.toString, as JsonConverter writes it
    "c_numeric": ("-0.05", {"precise": "-0.05", "string": "-0.05", "double": "-0.05"}),
    "c_numeric_var": (
        "1234567890123456789012345678901234567890.5",  # unscaled > 2^127: 17 bytes
        {"precise": "1234567890123456789012345678901234567890.5",
         "string": "1234567890123456789012345678901234567890.5",
         "double": "1.2345678901234568E39"},
    ),
    "c_varchar": ("''", ""),
    "c_char": ("'abcde'", "abcde"),
    "c_text": ("'😀 ✓ ü'", "😀 ✓ ü"),
    "c_uuid": ("'00000000-0000-0000-0000-000000000000'", "00000000-0000-0000-0000-000000000000"),
    "c_json": ("'null'", "null"),
    "c_jsonb": ("'[]'", "[]"),
    "c_enum": ("'sad'", "sad"),
    "c_int_arr": ("'{}'", "[]"),
    "c_text_arr": ("'{NULL,\"\"}'", '[null,""]'),
    "c_interval": (
        "'-1 days -00:00:01.5'",
        {
            "precise": micro_duration(0, 0, -1, 0, 0, -1.5),
            "string": "P0Y0M-1DT0H0M-1.5S",
            "double": micro_duration(0, 0, -1, 0, 0, -1.5),
        },
    ),
    "c_tstz": ("'1969-12-31 23:59:59.999999+00'", "1969-12-31T23:59:59.999999Z"),
    "c_ts": (
        "'1900-01-01 00:00:00'",
        {"precise": "1900-01-01T00:00:00.000000", "string": "1900-01-01T00:00:00.000000",
         "double": "1900-01-01T00:00:00.000"},
    ),
    "c_ts3": ("'1969-12-31 23:59:59.999'", "1969-12-31T23:59:59.999"),
    "c_date": ("'1969-12-31'", "1969-12-31"),
    "c_time": ("'00:00:00'", {"precise": "00:00:00.000000", "string": "00:00:00.000000", "double": "00:00:00.000"}),
    "c_time3": ("'23:59:59.999'", "23:59:59.999"),
    "c_timetz": ("'00:00:00+00'", "00:00:00Z"),
    "c_bytea": ("'\\x'", ""),
    "c_bits": ("B'111111111111'", "4095"),
    "c_xml": ("'<empty/>'", "<empty/>"),
    "c_inet": ("'::1'", "::1"),
}

# Non-finite and out-of-range values.
ROW_SPECIAL = {
    "c_real": ("'Infinity'", "Infinity"),
    "c_double": ("'NaN'", "NaN"),
    # NaN: null under precise (not representable), the string NAN, the double NaN
    "c_numeric_var": ("'NaN'", {"precise": None, "string": "NAN", "double": "NaN"}),
    "c_tstz": ("'infinity'", "infinity"),
    "c_ts": ("'-infinity'", {"precise": "-infinity", "string": "-infinity", "double": "-infinity"}),
    "c_ts3": ("'infinity'", {"precise": "infinity", "string": "infinity", "double": "infinity"}),
    # Debezium mis-encodes a date 'infinity': a day count far before year
    # -262143 (-622191234 in the snapshot, -2147472692 when streaming), which
    # the decoder can only show as -infinity.
    "c_date": ("'infinity'", "-infinity"),
    "c_time": ("'24:00:00'", {"precise": "24:00:00.000000", "string": "24:00:00.000000", "double": "24:00:00.000"}),
}

ROW_NULLS = {}

# id -> (row, snapshot?) ; ids 1-3 exist before the connectors start.
TYPE_ROWS = [
    (1, ROW_TYPICAL, True),
    (2, ROW_EDGE, True),
    (3, ROW_SPECIAL, True),
    (4, ROW_TYPICAL, False),
    (5, ROW_EDGE, False),
    (6, ROW_SPECIAL, False),
    (7, ROW_NULLS, False),
]


def types_insert(rid, row):
    cols = [c for c, _ in TYPE_COLUMNS]
    vals = [str(rid)] + [row[c][0] if c in row else "NULL" for c in cols[1:]]
    return f"INSERT INTO {TYPES_TABLE} ({', '.join(cols)}) VALUES ({', '.join(vals)});"


def types_expected_row(rid, row, mode):
    out = {"id": str(rid)}
    for c, _ in TYPE_COLUMNS[1:]:
        if c not in row:
            out[c] = None
            continue
        e = row[c][1]
        out[c] = e[mode] if isinstance(e, dict) else e
    return out


# --- the CDC tables ----------------------------------------------------------------

CDC_DDL = """
CREATE TABLE cdc_full (
  id int PRIMARY KEY,
  name text NOT NULL,
  email text,
  score numeric(6,2),
  updated_at timestamptz
);
ALTER TABLE cdc_full REPLICA IDENTITY FULL;
CREATE TABLE cdc_default (
  id int PRIMARY KEY,
  title text,
  body text,
  qty int NOT NULL DEFAULT 0
);
-- out of line without compression, so an UPDATE that leaves it unchanged
-- sends pgoutput's "unchanged TOAST" marker
ALTER TABLE cdc_default ALTER COLUMN body SET STORAGE EXTERNAL;
"""


def full(i, name, email, score, ts):
    return {"id": str(i), "name": name, "email": email, "score": score, "updated_at": ts}


def dflt(i, title, body, qty):
    return {"id": str(i), "title": title, "body": body, "qty": str(qty)}


# timestamptz is timestamptz(6): ZonedTimestamp with 6 fraction digits
ANN = full(1, "Ann", "ann@example.com", "99.99", "2024-01-01T00:00:00.000000Z")
BOB = full(2, "Bob", "bob@example.com", "10.50", "2024-01-02T03:04:05.500000Z")
BOB_NULLS = full(2, "Bob", None, None, "2024-01-02T03:04:05.500000Z")
CY = full(3, "Cy", None, "0.00", None)
CY20 = full(20, "Cy", None, "0.00", None)
DOC = dflt(1, "doc", TOAST_BODY, 1)

CDC_SNAPSHOT_SQL = (
    "INSERT INTO cdc_full VALUES (1, 'Ann', 'ann@example.com', 99.99, '2024-01-01 00:00:00+00');"
)
CDC_SNAPSHOT = [("cdc_full", "r", ANN["id"], None, ANN)]

# (SQL of one transaction, the change records it produces in order:
#  (table, op, key id, before, after); op "tomb" is a tombstone, "t" a truncate)
CDC_STEPS = [
    ("INSERT INTO cdc_full VALUES (2, 'Bob', 'bob@example.com', 10.5, '2024-01-02 03:04:05.5+00');",
     [("cdc_full", "c", "2", None, BOB)]),
    (f"INSERT INTO cdc_default VALUES (1, 'doc', repeat('0123456789abcdef', 256), 1);",
     [("cdc_default", "c", "1", None, DOC)]),
    # body unchanged and out of line: the placeholder; DEFAULT identity: no before
    ("UPDATE cdc_default SET qty = 2 WHERE id = 1;",
     [("cdc_default", "u", "1", None, dflt(1, "doc", PLACEHOLDER, 2))]),
    # columns set to NULL; FULL identity: the whole before image
    ("UPDATE cdc_full SET email = NULL, score = NULL WHERE id = 2;",
     [("cdc_full", "u", "2", BOB, BOB_NULLS)]),
    ("UPDATE cdc_default SET body = 'short body', title = NULL WHERE id = 1;",
     [("cdc_default", "u", "1", None, dflt(1, None, "short body", 2))]),
    # one transaction over both tables
    ("BEGIN;\n"
     "INSERT INTO cdc_full VALUES (3, 'Cy', NULL, 0, NULL);\n"
     "UPDATE cdc_default SET qty = 3 WHERE id = 1;\n"
     "INSERT INTO cdc_default VALUES (2, 'second', 'b2', 5);\n"
     "COMMIT;",
     [("cdc_full", "c", "3", None, CY),
      ("cdc_default", "u", "1", None, dflt(1, None, "short body", 3)),
      ("cdc_default", "c", "2", None, dflt(2, "second", "b2", 5))]),
    # rolled back: nothing
    ("BEGIN;\nINSERT INTO cdc_full VALUES (99, 'ghost', NULL, NULL, NULL);\nROLLBACK;", []),
    ("DELETE FROM cdc_full WHERE id = 2;",
     [("cdc_full", "d", "2", BOB_NULLS, None), ("cdc_full", "tomb", "2", None, None)]),
    # DEFAULT identity: the before image holds the key only; qty is NOT NULL
    # DEFAULT 0, so its schema is optional:false with default 0
    ("DELETE FROM cdc_default WHERE id = 2;",
     [("cdc_default", "d", "2", dflt(2, None, None, 0), None),
      ("cdc_default", "tomb", "2", None, None)]),
    # a primary key change: delete + tombstone of the old key, create of the new
    ("UPDATE cdc_full SET id = 20 WHERE id = 3;",
     [("cdc_full", "d", "3", CY, None), ("cdc_full", "tomb", "3", None, None),
      ("cdc_full", "c", "20", None, CY20)]),
    ("TRUNCATE cdc_default;",
     [("cdc_default", "t", None, None, None)]),
    ("INSERT INTO cdc_default VALUES (3, 'after truncate', NULL, 7);",
     [("cdc_default", "c", "3", None, dflt(3, "after truncate", None, 7))]),
]

HEARTBEATS_KEPT = 3

# --- SQL ------------------------------------------------------------------------


def sql(name):
    if name == "ddl":
        cols = ",\n  ".join(f"{c} {t}" for c, t in TYPE_COLUMNS)
        return (
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\n"
            f"CREATE TABLE {TYPES_TABLE} (\n  {cols}\n);\n" + CDC_DDL
        )
    if name == "snapshot":
        return "\n".join(
            [types_insert(i, r) for i, r, snap in TYPE_ROWS if snap] + [CDC_SNAPSHOT_SQL]
        ) + "\n"
    if name == "types_stream":
        return "\n".join(types_insert(i, r) for i, r, snap in TYPE_ROWS if not snap) + "\n"
    if name == "cdc_stream":
        return "\n".join(step for step, _ in CDC_STEPS) + "\n"
    raise SystemExit(f"unknown sql {name}")


# --- expected records (without offsets) ------------------------------------------


def expected_types(mode):
    topic = f"pgtypes_{mode}.public.{TYPES_TABLE}"
    snaps = [i for i, _, s in TYPE_ROWS if s]
    recs = []
    for rid, row, snap in TYPE_ROWS:
        if snap:
            flag = "first" if rid == snaps[0] else "last" if rid == snaps[-1] else "true"
        else:
            flag = "false"
        recs.append({
            "topic": topic, "kind": "change", "op": "r" if snap else "c",
            "key": {"id": str(rid)}, "before": None,
            "after": types_expected_row(rid, row, mode),
            "source": {"connector": "postgresql", "name": f"pgtypes_{mode}", "db": DB,
                       "schema": "public", "table": TYPES_TABLE, "snapshot": flag},
            "transaction": None,
        })
    return recs


def cdc_record(table, op, key, before, after, snapshot):
    topic = f"pgcdc.public.{table}"
    if op == "tomb":
        return {"topic": topic, "kind": "tombstone", "key": {"id": key}}
    return {
        "topic": topic, "kind": "change", "op": op,
        "key": None if key is None else {"id": key},
        "before": before, "after": after,
        "source": {"connector": "postgresql", "name": "pgcdc", "db": DB,
                   "schema": "public", "table": table, "snapshot": snapshot},
    }


def expected_cdc():
    """Change and marker records, in the order of each topic."""
    recs = []
    for t, op, k, b, a in CDC_SNAPSHOT:
        r = cdc_record(t, op, k, b, a, "last")
        r["transaction"] = None
        recs.append(r)
    for _, changes in CDC_STEPS:
        events = [c for c in changes if c[1] != "tomb"]
        if not events:
            continue
        recs.append({"topic": "pgcdc.transaction", "kind": "transaction", "status": "BEGIN",
                     "event_count": None})
        total = 0
        per_table = {}
        for t, op, k, b, a in changes:
            r = cdc_record(t, op, k, b, a, "false")
            if op != "tomb":
                total += 1
                per_table[t] = per_table.get(t, 0) + 1
                r["transaction"] = {"total_order": total, "data_collection_order": per_table[t]}
            recs.append(r)
        recs.append({"topic": "pgcdc.transaction", "kind": "transaction", "status": "END",
                     "event_count": total,
                     "data_collections": [
                         {"data_collection": f"public.{t}", "event_count": n}
                         for t, n in sorted(per_table.items())]})
    return recs


def expected_heartbeats():
    return [{"topic": "__debezium-heartbeat.pgcdc", "kind": "heartbeat",
             "key": {"serverName": "pgcdc"}}] * HEARTBEATS_KEPT


FIXTURES = {
    "pg_types_precise.jsonl": (["pgtypes_precise."], lambda: expected_types("precise")),
    "pg_types_string.jsonl": (["pgtypes_string."], lambda: expected_types("string")),
    "pg_types_double.jsonl": (["pgtypes_double."], lambda: expected_types("double")),
    "pg_cdc.jsonl": (["pgcdc."], expected_cdc),
    "pg_heartbeat.jsonl": (["__debezium-heartbeat.pgcdc"], expected_heartbeats),
}


def counts():
    """Records per topic once the capture is complete (heartbeats: at least)."""
    c = {}
    for name, (_, exp) in FIXTURES.items():
        for r in exp():
            c[r["topic"]] = c.get(r["topic"], 0) + 1
    return c


# --- reference decoder (the rules of src/cdc/logical.rs) -----------------------------


class Num(str):
    """A JSON number kept as its text."""


def loads(text):
    return json.loads(text, parse_int=Num, parse_float=Num, parse_constant=Num)


PG_POS_INF = 9_223_372_036_825_200_000
PG_NEG_INF = -9_223_372_036_832_400_000


def civil_from_days(z):
    """Proleptic Gregorian (y, m, d) of a day count since 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + (m <= 2), m, d)


CHRONO_MAX_DAYS = 95_026_601  # days to +262143-12-31; beyond it: infinity
CHRONO_MIN_DAYS = -96_465_658


def date_text(days):
    if days > CHRONO_MAX_DAYS or days < CHRONO_MIN_DAYS:
        return "-infinity" if days < 0 else "infinity"
    y, m, d = civil_from_days(days)
    ys = f"{y:04d}" if 0 <= y <= 9999 else (f"+{y}" if y > 9999 else f"-{-y:04d}")
    return f"{ys}-{m:02d}-{d:02d}"


def time_text(v, per_sec, digits):
    sign = "-" if v < 0 else ""
    a = abs(v)
    secs, frac = divmod(a, per_sec)
    return f"{sign}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frac:0{digits}d}"


def timestamp_text(v, per_sec, digits):
    if (per_sec == 10**9 and v in (2**63 - 1, -(2**63))) or (per_sec != 10**9 and v in (PG_POS_INF, PG_NEG_INF)):
        return "-infinity" if v < 0 else "infinity"
    secs, frac = divmod(v, per_sec)
    days, sod = divmod(secs, 86400)
    d = date_text(days)
    if d.endswith("infinity"):
        return d
    return f"{d}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}.{frac:0{digits}d}"


def scaled(unscaled, scale):
    neg = unscaled < 0
    digits = str(abs(unscaled))
    if scale <= 0:
        s = digits + ("0" * -scale if unscaled != 0 else "")
    elif len(digits) > scale:
        s = digits[:-scale] + "." + digits[-scale:]
    else:
        s = "0." + "0" * (scale - len(digits)) + digits
    return ("-" if neg and unscaled != 0 else "") + s


def decimal_text(v, scale):
    if isinstance(v, Num):
        return scaled(int(Decimal(v).scaleb(scale)), scale)
    raw = base64.b64decode(v)
    return scaled(int.from_bytes(raw, "big", signed=True), scale)


def f32_text(v):
    if v in ("NaN", "Infinity", "-Infinity"):
        return str(v)
    x = struct.unpack("f", struct.pack("f", float(v)))[0]
    for p in range(1, 18):
        s = f"{x:.{p}g}"
        if struct.unpack("f", struct.pack("f", float(s)))[0] == x:
            break
    t = format(Decimal(s), "f")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t


def logical(schema):
    return schema.get("name") or ""


def column_text(v, schema):
    """Canonical text of a non-null value (a top-level column)."""
    t, name = schema["type"], logical(schema)
    params = schema.get("parameters") or {}
    if name == "org.apache.kafka.connect.data.Decimal":
        return decimal_text(v, int(params["scale"]))
    if name == "io.debezium.data.VariableScaleDecimal":
        return decimal_text(v["value"], int(v["scale"]))
    if name in ("io.debezium.time.Date", "org.apache.kafka.connect.data.Date"):
        return date_text(int(v))
    if name in ("io.debezium.time.Time", "org.apache.kafka.connect.data.Time"):
        return time_text(int(v), 1000, 3)
    if name == "io.debezium.time.MicroTime":
        return time_text(int(v), 10**6, 6)
    if name == "io.debezium.time.NanoTime":
        return time_text(int(v), 10**9, 9)
    if name in ("io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"):
        return timestamp_text(int(v), 1000, 3)
    if name == "io.debezium.time.MicroTimestamp":
        return timestamp_text(int(v), 10**6, 6)
    if name == "io.debezium.time.NanoTimestamp":
        return timestamp_text(int(v), 10**9, 9)
    if name == "io.debezium.data.Bits":
        raw = base64.b64decode(v)
        n = int.from_bytes(raw, "little")
        return str(n) if len(raw) <= 16 else hex(n)
    if t in ("int8", "int16", "int32", "int64"):
        return str(int(v))
    if t == "boolean":
        return "true" if v else "false"
    if t == "float":
        return f32_text(v)
    if t == "double":
        return str(v)
    if t in ("string", "bytes"):
        return v
    if t == "array":
        return "[" + ",".join(nested_json(x, schema["items"]) for x in v) + "]"
    raise ValueError(f"no reference rule for {schema}")


def nested_json(v, schema):
    if v is None:
        return "null"
    t = schema["type"]
    if logical(schema) or t in ("string", "bytes"):
        if t in ("string", "bytes") or logical(schema) not in ("io.debezium.time.MicroDuration", "io.debezium.time.Year"):
            return json.dumps(column_text(v, schema), ensure_ascii=False)
    if t == "boolean":
        return "true" if v else "false"
    if t in ("int8", "int16", "int32", "int64", "double"):
        return str(v)
    if t == "float":
        return f32_text(v)
    if t == "array":
        return column_text(v, schema)
    raise ValueError(f"no nested rule for {schema}")


def row(payload, schema):
    if payload is None:
        return None
    out = {}
    for f in schema["fields"]:
        absent = f["field"] not in payload
        v = payload.get(f["field"])
        if v is None:
            if "default" in f and f["default"] is not None and (absent or not f.get("optional")):
                out[f["field"]] = column_text(f["default"], f)
            elif f.get("optional") or absent:
                out[f["field"]] = None
            else:
                raise ValueError(f"null in required field {f['field']}")
        else:
            out[f["field"]] = column_text(v, f)
    return out


def decode(topic, key, value):
    rec = {"topic": topic}
    k = loads(key) if key is not None else None
    if value is None:
        rec["kind"] = "tombstone"
        rec["key"] = row(k["payload"], k["schema"]) if k else None
        return rec
    msg = loads(value)
    schema, payload = msg["schema"], msg["payload"]
    name = schema.get("name", "")
    fields = {f["field"]: f for f in schema.get("fields", [])}
    if name == "io.debezium.connector.common.Heartbeat" or topic.startswith("__debezium-heartbeat"):
        rec.update(kind="heartbeat", key=row(k["payload"], k["schema"]) if k else None)
        return rec
    if name == "io.debezium.connector.common.TransactionMetadataValue":
        rec.update(kind="transaction", status=payload["status"], id=payload["id"],
                   event_count=None if payload.get("event_count") is None else int(payload["event_count"]))
        if payload.get("data_collections") is not None:
            # (sorted: MariaDB's END lists them in no particular order)
            rec["data_collections"] = sorted(
                ({"data_collection": d["data_collection"], "event_count": int(d["event_count"])}
                 for d in payload["data_collections"]), key=lambda d: d["data_collection"])
        return rec
    if name.endswith(".SchemaChangeValue"):
        rec.update(kind="schema_change", key=row(k["payload"], k["schema"]) if k else None,
                   databaseName=payload.get("databaseName"), ddl=payload.get("ddl"))
        return rec
    if not name.endswith(".Envelope"):
        raise ValueError(f"unexpected value schema {name}")
    src = payload["source"]
    tx = payload.get("transaction")
    rec.update(
        kind="change", op=payload["op"],
        key=row(k["payload"], k["schema"]) if k else None,
        before=row(payload.get("before"), fields["before"]),
        after=row(payload.get("after"), fields["after"]),
        source={k: src[k] for k in ("connector", "name", "db", "schema", "table", "snapshot") if k in src},
        transaction=None if tx is None else {
            "id": tx["id"], "total_order": int(tx["total_order"]),
            "data_collection_order": int(tx["data_collection_order"])},
    )
    return rec


# --- convert ------------------------------------------------------------------------------


def read_dump(path):
    """A ConsoleConsumer dump (print.timestamp/partition/offset/key, tab
    separated, null.literal=NULL_LITERAL) of one topic: its file name is the topic."""
    topic = Path(path).name.removesuffix(".dump")
    out = []
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if not line:
                continue
            ts, part, off, key, value = line.split(b"\t", 4)
            assert ts.startswith(b"CreateTime:") and part.startswith(b"Partition:") and off.startswith(b"Offset:"), line[:80]
            dec = lambda b: None if b == NULL_LITERAL else b.decode("utf-8")
            out.append({"ts": int(ts[11:]), "topic": topic, "partition": int(part[10:]),
                        "offset": int(off[7:]), "key": dec(key), "value": dec(value)})
    return out


NULL_LITERAL = b"@@LAKEHOUSE_NULL@@"


def position(src):
    """Where a change is in the source's log: the Postgres LSN, or MySQL's
    (binlog file number, position, row)."""
    if src.get("lsn") is not None:
        return (int(src["lsn"]),)
    if src.get("file"):
        return (int(src["file"].rsplit(".", 1)[-1]), int(src.get("pos") or 0), int(src.get("row") or 0))
    return (-1,)


def merge_in_commit_order(recs):
    """The records of several topics as one stream in commit order. Each
    topic keeps its own order; across topics, changes (and schema changes) go
    by their position in the source's log, a transaction's BEGIN just before
    its first change and its END just after its last (markers carry no usable
    position: a Postgres marker id's LSN is not the events' one). A tombstone
    goes with the delete before it."""
    payloads = {id(r): (json.loads(r["value"])["payload"] if r["value"] else None) for r in recs}
    txid = lambda i: str(i).split(":")[0]
    span = {}
    for r in recs:
        p = payloads[id(r)]
        if p and isinstance(p.get("transaction"), dict) and isinstance(p.get("source"), dict):
            k = (position(p["source"]), int(p["transaction"]["total_order"]))
            lo, hi = span.get(txid(p["transaction"]["id"]), (k, k))
            span[txid(p["transaction"]["id"])] = (min(lo, k), max(hi, k))
    queues = {}
    for r in sorted(recs, key=lambda r: (r["topic"], r["partition"], r["offset"])):
        queues.setdefault((r["topic"], r["partition"]), []).append(r)

    def own_key(r):
        """None for a tombstone, or a marker of a transaction with no change."""
        p = payloads[id(r)]
        if p is None:
            return None
        if "status" in p and "id" in p and "source" not in p:
            if txid(p["id"]) not in span:
                return None
            lo, hi = span[txid(p["id"])]
            return (lo[0], lo[1], 0) if p["status"] == "BEGIN" else (hi[0], hi[1], 2)
        tx = p.get("transaction") if isinstance(p.get("transaction"), dict) else {}
        return (position(p.get("source") or {}), int(tx.get("total_order") or 0), 1)

    keys = {}
    for q, rs in queues.items():
        ks = [own_key(r) for r in rs]
        # a tombstone goes with the delete before it; a marker of an empty
        # transaction (MariaDB: tables not captured, DDL) with what follows it
        for i in range(len(rs)):
            if ks[i] is None and payloads[id(rs[i])] is None and i > 0:
                ks[i] = ks[i - 1]
        nxt = None
        for i in reversed(range(len(rs))):
            if ks[i] is None:
                ks[i] = nxt if nxt is not None else (ks[i - 1] if i > 0 and ks[i - 1] else ((-1,), 0, 0))
            else:
                nxt = (ks[i][0], ks[i][1], -1)
        for r, k in zip(rs, ks):
            keys[id(r)] = k

    out = []
    while queues:
        q = min(queues, key=lambda q: (keys[id(queues[q][0])], q))
        out.append(queues[q].pop(0))
        if not queues[q]:
            del queues[q]
    return out


def compare(file, got, want):
    errors = []
    if len(got) != len(want):
        errors.append(f"{file}: {len(got)} records, expected {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        gg = {k: v for k, v in g.items() if k in w}
        # ids are whatever the database assigned: compared for consistency, not value
        if w.get("kind") == "transaction":
            gg.pop("id", None)
        if isinstance(gg.get("transaction"), dict):
            gg["transaction"] = {k: v for k, v in gg["transaction"].items() if k != "id"}
        if gg != w:
            errors.append(f"{file} record {i} ({g['topic']}@{g.get('offset')}):\n  got  {json.dumps(gg, ensure_ascii=False)[:3000]}\n  want {json.dumps(w, ensure_ascii=False)[:3000]}")
    return errors


def convert(out_dir, dumps, fixtures=None, connectors=None, heartbeats_kept=None):
    fixtures = FIXTURES if fixtures is None else fixtures
    connectors = CONNECTORS if connectors is None else connectors
    heartbeats_kept = HEARTBEATS_KEPT if heartbeats_kept is None else heartbeats_kept
    out_dir = Path(out_dir)
    records = [r for d in dumps for r in read_dump(d)]
    expected_doc = {}
    errors = []
    for file, (prefixes, exp) in fixtures.items():
        # a pattern ending in "." is a topic prefix, any other a topic name
        recs = [r for r in records
                if any(r["topic"] == p or (p.endswith(".") and r["topic"].startswith(p)) for p in prefixes)]
        if all(p.startswith("__debezium-heartbeat") for p in prefixes):
            recs = sorted(recs, key=lambda r: r["offset"])[:heartbeats_kept]
        recs = merge_in_commit_order(recs)
        with open(out_dir / file, "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps({"topic": r["topic"], "partition": r["partition"],
                                    "offset": r["offset"], "key": r["key"],
                                    "value": r["value"]}, ensure_ascii=False) + "\n")
        decoded = []
        for r in recs:
            d = decode(r["topic"], r["key"], r["value"])
            d["partition"], d["offset"] = r["partition"], r["offset"]
            decoded.append(d)
        want = exp(decoded) if exp.__code__.co_argcount else exp()
        # Expectations are per topic in order; the file interleaves topics.
        by_topic = {}
        for d in decoded:
            by_topic.setdefault(d["topic"], []).append(d)
        want_by_topic = {}
        for w in want:
            want_by_topic.setdefault(w["topic"], []).append(w)
        if set(by_topic) != set(want_by_topic):
            errors.append(f"{file}: topics {sorted(by_topic)}, expected {sorted(want_by_topic)}")
        for t in want_by_topic:
            errors += compare(file, by_topic.get(t, []), want_by_topic[t])
        # transaction ids: every change of a transaction names its BEGIN's id
        # Debezium 3.x writes the id as "<txId>:<LSN of that event>": BEGIN,
        # each change and END of one transaction share the txId part only.
        txid = lambda i: i.split(":")[0]
        # Each END closes the BEGIN just before it; every change of a
        # transaction lies between the two. (MariaDB opens a transaction for a
        # DDL statement that no END closes: a BEGIN may follow a BEGIN that
        # had no change.)
        open_tx, open_events = None, 0
        for d in decoded:
            if d.get("kind") == "transaction":
                if d["status"] == "BEGIN":
                    if open_tx is not None and open_events:
                        errors.append(f"{file}: BEGIN {d['id']} inside transaction {open_tx}")
                    open_tx, open_events = txid(d["id"]), 0
                else:
                    if txid(d["id"]) != open_tx:
                        errors.append(f"{file}: END {d['id']} does not close the open transaction {open_tx}")
                    open_tx = None
            elif d.get("kind") == "change" and d.get("transaction"):
                open_events += 1
                if txid(d["transaction"]["id"]) != open_tx:
                    errors.append(f"{file}: {d['topic']}@{d['offset']} of transaction "
                                  f"{d['transaction']['id']} is not between its BEGIN and END")
        # expected.json: the expectation of each record (per topic order), with
        # where it is and the verbatim transaction ids
        entries = []
        counters = {}
        for d in decoded:
            i = counters.get(d["topic"], 0)
            counters[d["topic"]] = i + 1
            w = dict(want_by_topic.get(d["topic"], [{}] * (i + 1))[i]) if i < len(want_by_topic.get(d["topic"], [])) else {}
            e = {"topic": d["topic"], "partition": d["partition"], "offset": d["offset"], **{k: v for k, v in w.items() if k != "topic"}}
            if e.get("kind") == "transaction":
                e["id"] = d.get("id")
            if isinstance(e.get("transaction"), dict):
                e["transaction"] = {"id": d["transaction"]["id"], **e["transaction"]}
            entries.append(e)
        expected_doc[file] = {"records": entries}
    # One expected.json for every capture script: replace this capture's entries.
    try:
        doc = json.loads((out_dir / "expected.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = {"connectors": {}, "files": {}}
    doc["about"] = ("Expected decoding of each fixture record; see README.md. Column values are the "
                    "canonical text of src/cdc/logical.rs (null = SQL NULL). Records are listed in file order.")
    doc["connectors"].update(connectors)
    doc["files"].update(expected_doc)
    doc = {"about": doc["about"], "connectors": dict(sorted(doc["connectors"].items())),
           "files": dict(sorted(doc["files"].items()))}
    with open(out_dir / "expected.json", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        print(f"{len(errors)} mismatch(es) between the capture and the expectations", file=sys.stderr)
        return 1
    print(f"{sum(len(v['records']) for v in expected_doc.values())} records match their expectations")
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "sql":
        sys.stdout.write(sql(argv[2]))
    elif cmd == "connector":
        props = dict(CONNECTORS[argv[2]])
        for kv in argv[3:]:
            k, v = kv.split("=", 1)
            props[k] = v
        sys.stdout.write("".join(f"{k}={v}\n" for k, v in props.items()))
    elif cmd == "counts":
        for t, n in counts().items():
            print(t, n)
    elif cmd == "convert":
        return convert(argv[2], argv[3:])
    else:
        raise SystemExit(f"unknown command {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
