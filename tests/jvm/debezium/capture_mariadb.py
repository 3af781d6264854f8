#!/usr/bin/env python3
"""The MariaDB scenarios of the Debezium fixtures (mysql_*.jsonl): DDL, DML,
connector settings and expected values; the reference decoder, the file
conversion and the checks are capture.py's. Driven by capture-mariadb.sh.

  capture_mariadb.py sql NAME                 ddl, snapshot, types_stream, cdc_stream
  capture_mariadb.py connector NAME K=V...    connector properties
  capture_mariadb.py counts                   `topic count` lines (at least)
  capture_mariadb.py convert OUT_DIR DUMP...  fixtures, expected.json, checks
"""

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import capture  # noqa: E402

DB = "fixtures"

COMMON = {
    "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
    "tasks.max": "1",
    "database.hostname": "127.0.0.1",
    "database.user": "debezium",
    "database.password": "dbz",
    "database.ssl.mode": "disable",
    "database.include.list": DB,
    # the table schemas a binlog connector tracks, in a file next to the offsets
    "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
    "snapshot.mode": "initial",
}

TYPE_MODES = {
    "precise": {"decimal.handling.mode": "precise", "bigint.unsigned.handling.mode": "precise"},
    "string": {"decimal.handling.mode": "string"},
    "double": {"decimal.handling.mode": "double", "time.precision.mode": "connect"},
}

CONNECTORS = {}
for _i, (_mode, _extra) in enumerate(TYPE_MODES.items()):
    CONNECTORS[f"mysql_types_{_mode}"] = {
        **COMMON,
        "name": f"mysql_types_{_mode}",
        "topic.prefix": f"mytypes_{_mode}",
        "database.server.id": str(5401 + _i),
        "table.include.list": f"{DB}.all_types",
        "include.schema.changes": "false",
        **_extra,
    }
CONNECTORS["mysql_cdc"] = {
    **COMMON,
    "name": "mysql_cdc",
    "topic.prefix": "mycdc",
    "database.server.id": "5404",
    "table.include.list": f"{DB}.cdc_orders,{DB}.cdc_items",
    "include.schema.changes": "true",
    "decimal.handling.mode": "precise",
    "heartbeat.interval.ms": "1000",
    "provide.transaction.metadata": "true",
}

TYPE_COLUMNS = [
    ("id", "INT PRIMARY KEY"),
    ("c_tinyint", "TINYINT"),
    ("c_bool", "BOOLEAN"),
    ("c_smallint", "SMALLINT"),
    ("c_mediumint", "MEDIUMINT"),
    ("c_int", "INT"),
    ("c_bigint", "BIGINT"),
    ("c_ubigint", "BIGINT UNSIGNED"),
    ("c_float", "FLOAT"),
    ("c_double", "DOUBLE"),
    ("c_decimal", "DECIMAL(10,2)"),
    ("c_char", "CHAR(5)"),
    ("c_varchar", "VARCHAR(20)"),
    ("c_text", "TEXT"),
    ("c_blob", "BLOB"),
    ("c_varbinary", "VARBINARY(8)"),
    ("c_json", "JSON"),
    ("c_enum", "ENUM('sad','ok','happy')"),
    ("c_set", "SET('a','b','c')"),
    ("c_date", "DATE"),
    ("c_time", "TIME(6)"),
    ("c_time0", "TIME"),
    ("c_datetime3", "DATETIME(3)"),
    ("c_datetime6", "DATETIME(6)"),
    ("c_timestamp", "TIMESTAMP(6) NULL"),
    ("c_year", "YEAR"),
    ("c_bit", "BIT(12)"),
    ("c_uuid", "UUID"),
]

ROW_TYPICAL = {
    "c_tinyint": ("42", "42"),
    "c_bool": ("true", "1"),  # BOOLEAN is TINYINT(1): int16
    "c_smallint": ("1234", "1234"),
    "c_mediumint": ("8388607", "8388607"),
    "c_int": ("2147483647", "2147483647"),
    "c_bigint": ("9007199254740993", "9007199254740993"),
    "c_ubigint": ("9223372036854775807", "9223372036854775807"),
    "c_float": ("3.14", "3.14"),
    "c_double": ("2.718281828459045", "2.718281828459045"),
    "c_decimal": ("12.5", {"precise": "12.50", "string": "12.50", "double": "12.5"}),
    "c_char": ("'ab'", "ab"),  # CHAR trailing spaces are not kept
    "c_varchar": ("'héllo wörld'", "héllo wörld"),
    "c_text": ("'line1\\nline2 \"q\" \\\\ \\t end'", 'line1\nline2 "q" \\ \t end'),
    "c_blob": ("X'DEADBEEF00'", "3q2+7wA="),
    "c_varbinary": ("X'0102'", "AQI="),
    # MariaDB's JSON is LONGTEXT with a CHECK: a plain string, kept verbatim
    "c_json": ("'{\"b\": 1,  \"a\": [1, 2]}'", '{"b": 1,  "a": [1, 2]}'),
    "c_enum": ("'happy'", "happy"),
    "c_set": ("'c,a'", "a,c"),
    "c_date": ("'2024-02-29'", "2024-02-29"),
    "c_time": ("'13:14:15.123456'", {"precise": "13:14:15.123456", "string": "13:14:15.123456", "double": "13:14:15.123"}),
    "c_time0": ("'13:14:15'", {"precise": "13:14:15.000000", "string": "13:14:15.000000", "double": "13:14:15.000"}),
    "c_datetime3": ("'2024-03-05 10:11:12.345'", "2024-03-05T10:11:12.345"),
    "c_datetime6": ("'2024-03-05 10:11:12.345678'", {"precise": "2024-03-05T10:11:12.345678", "string": "2024-03-05T10:11:12.345678", "double": "2024-03-05T10:11:12.345"}),
    "c_timestamp": ("'2024-03-05 10:11:12.345678'", "2024-03-05T10:11:12.345678Z"),
    "c_year": ("2024", "2024"),
    "c_bit": ("b'000000000101'", "5"),
    "c_uuid": ("'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
}

ROW_EDGE = {
    "c_tinyint": ("-128", "-128"),
    "c_bool": ("false", "0"),
    "c_smallint": ("-32768", "-32768"),
    "c_mediumint": ("-8388608", "-8388608"),
    "c_int": ("-2147483648", "-2147483648"),
    "c_bigint": ("-9223372036854775808", "-9223372036854775808"),
    # 2^64 - 1: a Decimal under bigint.unsigned.handling.mode=precise, the
    # int64 -1 (wrapped) under the default `long`
    "c_ubigint": ("18446744073709551615", {"precise": "18446744073709551615", "string": "-1", "double": "-1"}),
    "c_float": ("-0.125", "-0.125"),
    "c_double": ("-1.5e-10", "-1.5E-10"),
    "c_decimal": ("-0.05", "-0.05"),
    "c_char": ("''", ""),
    "c_varchar": ("'😀 ✓'", "😀 ✓"),
    "c_text": ("''", ""),
    "c_blob": ("X''", ""),
    "c_varbinary": ("X'00'", "AA=="),
    "c_json": ("'[]'", "[]"),
    "c_enum": ("'sad'", "sad"),
    "c_set": ("''", ""),
    "c_date": ("'1000-01-01'", "1000-01-01"),
    # TIME is a duration: negative and beyond 24 h
    # (time.precision.mode=connect cannot hold them: NULL)
    "c_time": ("'-838:59:59'", {"precise": "-838:59:59.000000", "string": "-838:59:59.000000", "double": None}),
    "c_time0": ("'838:59:59'", {"precise": "838:59:59.000000", "string": "838:59:59.000000", "double": None}),
    "c_datetime3": ("'1969-12-31 23:59:59.999'", "1969-12-31T23:59:59.999"),
    "c_datetime6": ("'9999-12-31 23:59:59.999999'", {"precise": "9999-12-31T23:59:59.999999", "string": "9999-12-31T23:59:59.999999", "double": "9999-12-31T23:59:59.999"}),
    # ZonedTimestamp: the snapshot drops a zero fraction, the binlog reader pads it
    "c_timestamp": ("'1970-01-01 00:00:01'", {"snapshot": "1970-01-01T00:00:01Z", "stream": "1970-01-01T00:00:01.000000Z"}),
    "c_year": ("1901", "1901"),
    "c_bit": ("b'111111111111'", "4095"),
    "c_uuid": ("'00000000-0000-0000-0000-000000000000'", "00000000-0000-0000-0000-000000000000"),
}

# Zero dates (inserted with sql_mode=''): Debezium sends them as NULL, except a
# zero TIMESTAMP read from the binlog, which becomes the epoch.
ROW_ZERO = {
    "c_date": ("'0000-00-00'", None),
    "c_datetime3": ("'0000-00-00 00:00:00'", None),
    "c_datetime6": ("'0000-00-00 00:00:00'", None),
    "c_timestamp": ("'0000-00-00 00:00:00'", {"snapshot": None, "stream": "1970-01-01T00:00:00.000000Z"}),
    # (YEAR 0 is left out: MariaDB Connector/J 3.5.3 throws on it in the
    # snapshot, which stops the connector)
}

ROW_NULLS = {}

TYPE_ROWS = [
    (1, ROW_TYPICAL, True),
    (2, ROW_EDGE, True),
    (3, ROW_ZERO, True),
    (4, ROW_TYPICAL, False),
    (5, ROW_EDGE, False),
    (6, ROW_ZERO, False),
    (7, ROW_NULLS, False),
]


def types_insert(rid, row):
    cols = [c for c, _ in TYPE_COLUMNS]
    vals = [str(rid)] + [row[c][0] if c in row else "NULL" for c in cols[1:]]
    stmt = f"INSERT INTO all_types ({', '.join(cols)}) VALUES ({', '.join(vals)});"
    if row is ROW_ZERO:
        return f"SET SESSION sql_mode = '';\n{stmt}\nSET SESSION sql_mode = DEFAULT;"
    return stmt


def types_expected_row(rid, row, mode, snap):
    out = {"id": str(rid)}
    for c, _ in TYPE_COLUMNS[1:]:
        if c not in row:
            out[c] = None
            continue
        e = row[c][1]
        if isinstance(e, dict) and "snapshot" in e:
            e = e["snapshot" if snap else "stream"]
        out[c] = e[mode] if isinstance(e, dict) else e
    return out


def orders(i, customer, amount, note, ts):
    return {"id": str(i), "customer": customer, "amount": amount, "note": note, "updated_at": ts}


def items(i, order_id, sku, qty):
    return {"id": str(i), "order_id": str(order_id), "sku": sku, "qty": str(qty)}


ANN = orders(1, "Ann", "99.99", "first", "2024-01-01T00:00:00.000000")
BOB = orders(2, "Bob", "10.50", "note", "2024-01-02T03:04:05.500000")
BOB_NULLS = orders(2, "Bob", None, None, "2024-01-02T03:04:05.500000")
CY = orders(3, "Cy", "5.00", None, None)
CY20 = orders(20, "Cy", "5.00", None, None)

CDC_DDL = """
CREATE TABLE cdc_orders (
  id INT PRIMARY KEY,
  customer VARCHAR(40) NOT NULL,
  amount DECIMAL(10,2),
  note TEXT,
  updated_at DATETIME(6)
);
CREATE TABLE cdc_items (
  id INT PRIMARY KEY,
  order_id INT NOT NULL,
  sku VARCHAR(20),
  qty INT NOT NULL DEFAULT 1
);
"""

CDC_SNAPSHOT_SQL = "INSERT INTO cdc_orders VALUES (1, 'Ann', 99.99, 'first', '2024-01-01 00:00:00');"
CDC_SNAPSHOT = [("cdc_orders", "r", "1", None, ANN)]

# (SQL of one transaction, its change records (table, op, key, before, after)
#  in order, whether it is a DDL statement). The binlog has full row images:
#  before images on every update and delete.
CDC_STEPS = [
    ("INSERT INTO cdc_orders VALUES (2, 'Bob', 10.5, 'note', '2024-01-02 03:04:05.5');",
     [("cdc_orders", "c", "2", None, BOB)], False),
    ("UPDATE cdc_orders SET note = NULL, amount = NULL WHERE id = 2;",
     [("cdc_orders", "u", "2", BOB, BOB_NULLS)], False),
    ("BEGIN;\n"
     "INSERT INTO cdc_orders VALUES (3, 'Cy', 0, NULL, NULL);\n"
     "INSERT INTO cdc_items VALUES (1, 3, 'sku-1', 2);\n"
     "INSERT INTO cdc_items VALUES (2, 3, 'sku-2', 1);\n"
     "UPDATE cdc_orders SET amount = 5.00 WHERE id = 3;\n"
     "COMMIT;",
     [("cdc_orders", "c", "3", None, orders(3, "Cy", "0.00", None, None)),
      ("cdc_items", "c", "1", None, items(1, 3, "sku-1", 2)),
      ("cdc_items", "c", "2", None, items(2, 3, "sku-2", 1)),
      ("cdc_orders", "u", "3", orders(3, "Cy", "0.00", None, None), CY)], False),
    ("BEGIN;\nINSERT INTO cdc_orders VALUES (99, 'ghost', NULL, NULL, NULL);\nROLLBACK;", [], False),
    # one statement, two rows: source.row 0 and 1 at one binlog position
    ("DELETE FROM cdc_items WHERE order_id = 3;",
     [("cdc_items", "d", "1", items(1, 3, "sku-1", 2), None), ("cdc_items", "tomb", "1", None, None),
      ("cdc_items", "d", "2", items(2, 3, "sku-2", 1), None), ("cdc_items", "tomb", "2", None, None)], False),
    ("UPDATE cdc_orders SET id = 20 WHERE id = 3;",
     [("cdc_orders", "d", "3", CY, None), ("cdc_orders", "tomb", "3", None, None),
      ("cdc_orders", "c", "20", None, CY20)], False),
    ("DELETE FROM cdc_orders WHERE id = 2;",
     [("cdc_orders", "d", "2", BOB_NULLS, None), ("cdc_orders", "tomb", "2", None, None)], False),
    # no change event, no schema change record either: only a BEGIN marker
    ("TRUNCATE cdc_items;", [], True),
    # a schema change record on the `mycdc` topic, and a new column in the
    # records after it
    ("ALTER TABLE cdc_items ADD COLUMN note VARCHAR(20) NULL;", [], True),
    ("INSERT INTO cdc_items VALUES (3, 20, 'after truncate', 7, 'new column');",
     [("cdc_items", "c", "3", None, {**items(3, 20, "after truncate", 7), "note": "new column"})], False),
]

HEARTBEATS_KEPT = 3


def sql(name):
    # TIMESTAMP literals are read in the session's time zone
    return "SET time_zone = '+00:00';\n" + _sql(name)


def _sql(name):
    if name == "ddl":
        cols = ",\n  ".join(f"{c} {t}" for c, t in TYPE_COLUMNS)
        return f"CREATE TABLE all_types (\n  {cols}\n);\n" + CDC_DDL
    if name == "snapshot":
        return "\n".join([types_insert(i, r) for i, r, s in TYPE_ROWS if s] + [CDC_SNAPSHOT_SQL]) + "\n"
    if name == "types_stream":
        return "\n".join(types_insert(i, r) for i, r, s in TYPE_ROWS if not s) + "\n"
    if name == "cdc_stream":
        return "\n".join(step for step, _, _ in CDC_STEPS) + "\n"
    raise SystemExit(f"unknown sql {name}")


def expected_types(mode):
    topic = f"mytypes_{mode}.{DB}.all_types"
    snaps = [i for i, _, s in TYPE_ROWS if s]
    recs = []
    for rid, row, snap in TYPE_ROWS:
        flag = ("first" if rid == snaps[0] else "last" if rid == snaps[-1] else "true") if snap else "false"
        recs.append({
            "topic": topic, "kind": "change", "op": "r" if snap else "c",
            "key": {"id": str(rid)}, "before": None,
            "after": types_expected_row(rid, row, mode, snap),
            "source": {"connector": "mariadb", "name": f"mytypes_{mode}", "db": DB,
                       "table": "all_types", "snapshot": flag},
            "transaction": None,
        })
    return recs


def cdc_record(table, op, key, before, after, snapshot):
    topic = f"mycdc.{DB}.{table}"
    if op == "tomb":
        return {"topic": topic, "kind": "tombstone", "key": {"id": key}}
    return {"topic": topic, "kind": "change", "op": op, "key": {"id": key},
            "before": before, "after": after,
            "source": {"connector": "mariadb", "name": "mycdc", "db": DB, "table": table,
                       "snapshot": snapshot}}


def expected_cdc():
    recs = []
    for t, op, k, b, a in CDC_SNAPSHOT:
        r = cdc_record(t, op, k, b, a, "last")
        r["transaction"] = None
        recs.append(r)
    # The binlog is the server's: every transaction gets its markers, those
    # of tables the connector does not capture (the types rows, streamed
    # first, one transaction each) with no event.
    for _ in [r for r in TYPE_ROWS if not r[2]]:
        recs.append({"topic": "mycdc.transaction", "kind": "transaction", "status": "BEGIN",
                     "event_count": None})
        recs.append({"topic": "mycdc.transaction", "kind": "transaction", "status": "END",
                     "event_count": 0, "data_collections": []})
    for _, changes, ddl in CDC_STEPS:
        if not changes and not ddl:
            continue
        recs.append({"topic": "mycdc.transaction", "kind": "transaction", "status": "BEGIN",
                     "event_count": None})
        if ddl:
            # a DDL statement's GTID opens a transaction that no END closes
            continue
        total, per_table = 0, {}
        for t, op, k, b, a in changes:
            r = cdc_record(t, op, k, b, a, "false")
            if op != "tomb":
                total += 1
                per_table[t] = per_table.get(t, 0) + 1
                r["transaction"] = {"total_order": total, "data_collection_order": per_table[t]}
            recs.append(r)
        recs.append({"topic": "mycdc.transaction", "kind": "transaction", "status": "END",
                     "event_count": total,
                     "data_collections": [{"data_collection": f"{DB}.{t}", "event_count": n}
                                          for t, n in sorted(per_table.items())]})
    return recs


def expected_schema_changes(decoded):
    """The DDL of the snapshot and of the streaming TRUNCATE, verbatim: checked
    for kind and database, the DDL texts are the record's."""
    out = []
    for d in decoded:
        out.append({"topic": "mycdc", "kind": "schema_change", "key": {"databaseName": d.get("databaseName")},
                    "databaseName": d.get("databaseName"), "ddl": d.get("ddl")})
    if not out or not (out[-1]["ddl"] or "").upper().startswith("ALTER TABLE CDC_ITEMS ADD COLUMN"):
        out.append({"topic": "mycdc", "kind": "schema_change", "ddl": "ALTER TABLE cdc_items ... (missing)"})
    return out


def expected_heartbeats():
    return [{"topic": "__debezium-heartbeat.mycdc", "kind": "heartbeat",
             "key": {"serverName": "mycdc"}}] * HEARTBEATS_KEPT


FIXTURES = {
    "mysql_types_precise.jsonl": (["mytypes_precise."], lambda: expected_types("precise")),
    "mysql_types_string.jsonl": (["mytypes_string."], lambda: expected_types("string")),
    "mysql_types_double.jsonl": (["mytypes_double."], lambda: expected_types("double")),
    "mysql_cdc.jsonl": (["mycdc.fixtures.", "mycdc.transaction"], expected_cdc),
    "mysql_schema_changes.jsonl": (["mycdc"], expected_schema_changes),
    "mysql_heartbeat.jsonl": (["__debezium-heartbeat.mycdc"], expected_heartbeats),
}


def counts():
    c = {}
    for _, (_, exp) in FIXTURES.items():
        if exp is expected_schema_changes:
            continue
        for r in exp():
            c[r["topic"]] = c.get(r["topic"], 0) + 1
    c["mycdc"] = 1
    return c


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
        return capture.convert(argv[2], argv[3:], FIXTURES, CONNECTORS, HEARTBEATS_KEPT)
    else:
        raise SystemExit(f"unknown command {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
