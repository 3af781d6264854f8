#!/usr/bin/env python3
"""Silver + gold peer: the shipped silver specs and the gold marts in DuckDB SQL.

    duckdb_peer.py BRONZE_TABLE OUT_LAKE [--layers DIR] [--sql DIR] [--threads N]
                   [--memory-limit 4GB] [--skip-gold] [--incremental]

A full load, the way a team would write it with DuckDB instead of
`lakehouse run silver` + `lakehouse run gold`: it reads the bronze Delta table
(ours, with the `deltalake` package: the DuckDB delta extension cannot be
downloaded here), and for every spec in layers/silver (in dependency order):

* takes the topic's rows, casts the declared `source.columns` out of the
  `after` map (`before` for deletes, the Kafka key for tombstones),
* runs the table's SQL (sql/silver/*.sql; DataFusion-only functions are
  rewritten or defined as macros: encode(sha256(x), 'hex'), initcap,
  to_unixtime),
* checks the expectations (drop: to <table>_quarantine; warn: counted;
  fail: abort) and quarantines upserts with a null key,
* orders the changes of a key by source position (LSN), then source ts_ms,
  then Kafka order (a tombstone takes the position of the record before it),
  and keeps the latest (SCD1, facts) with deletes applied unless the spec
  says `deletes = "ignore"`, or (SCD2) builds one version per change of the
  tracked columns (valid_from/valid_to from the source ts_ms, in-place updates
  of the other columns, deletes close the current version),
* adds surrogate keys (DuckDB hash(); not our FNV values) and the unknown
  member `-1`, resolves the facts' lookups in order (SCD1 by key, SCD2 as of
  a time: the version holding it, else the first one if earlier, else the
  last one; the date dimension by yyyymmdd), builds dim_date over the
  covered date columns,
* writes each table with `write_deltalake(mode="overwrite")`;

then runs every mart's SQL (sql/gold/*.sql) over those tables (kept in
DuckDB, not re-read from Delta) and writes each mart (partitioned like the
spec says, rows sorted by the keys). `pipeline_health` is left out: it reads
our system tables (Delta logs, run history), which have no DuckDB equivalent.

`--incremental` (after a run, which saves its last Kafka positions per topic
partition in OUT_LAKE/_peer_state.json): the incremental model a team would
write in dbt (`delete+insert` by unique key). The keys the new bronze rows
touch (and facts still pointing at an unknown member) are rebuilt with the
same SQL from their whole history in bronze, and MERGEd into the Delta
tables by key (and surrogate key for SCD2 versions), deleting the rows of
those keys that are gone; new failing rows are appended to the quarantine;
dim_date and the marts are rebuilt.

Not done (ours does): incremental runs from watermarks alone (the peer reads
and shapes each topic's whole history to rebuild the touched keys; no deletes
side table, no file pruning), truncates (reported, not
applied), TOAST placeholders (taken as NULL), a `WHERE` in a silver SQL,
expectations over lookup columns, the marts' grain check, commit metadata
and quarantine tables in our schema. Replayed changes (same position) are
applied again instead of being counted stale: same content, same result.
"""

import argparse
import os
import re
import sys
import time
import tomllib

import duckdb
import pyarrow as pa
import json

from deltalake import DeltaTable, QueryBuilder, write_deltalake

END_OF_TIME_US = 253_402_214_400_000_000  # 9999-12-31
UNKNOWN_FROM_US = -2_208_988_800_000_000  # 1900-01-01
BRONZE_COLUMNS = ["kafka_partition", "kafka_offset", "record_kind", "op",
                  "source_position", "source_ts_ms", "key", "before", "after"]
META = ["_is_delete", "_is_tombstone", "_is_truncate", "_pos", "_ts", "_kp", "_ko"]


def q(name):
    return '"' + name.replace('"', '""') + '"'


def lit(text):
    return "'" + text.replace("'", "''") + "'"


# ----------------------------------------------------------------- specs

def load_specs(directory):
    specs = {}
    for file in sorted(os.listdir(directory)):
        if file.endswith(".toml"):
            with open(os.path.join(directory, file), "rb") as f:
                spec = tomllib.load(f)
            spec["name"] = file[:-5]
            specs[spec["name"]] = spec
    return specs


def silver_order(specs):
    """Dependency order: lookups' tables first, the date dimension after the
    tables it covers."""
    deps = {}
    for name, s in specs.items():
        # A date lookup computes yyyymmdd: it does not need the calendar.
        d = {lk["table"] for lk in s.get("lookups", [])
             if specs.get(lk["table"], {}).get("kind") != "date"}
        d |= {c.split(".")[0] for c in s.get("date", {}).get("covers", [])}
        deps[name] = d & set(specs)
    order, done = [], set()
    while len(order) < len(specs):
        ready = sorted(n for n in specs if n not in done and deps[n] <= done)
        if not ready:
            raise SystemExit(f"lookup cycle among {sorted(set(specs) - done)}")
        for n in ready:
            order.append(n)
            done.add(n)
    return order


# ------------------------------------------------------ SQL adaptations

def strip_comments(sql):
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def rewrite_encode_sha256(sql):
    """encode(sha256(x), 'hex') (DataFusion: sha256 is binary) → sha256(x)
    (DuckDB: sha256 is already the hex text)."""
    out, i = [], 0
    pattern = re.compile(r"encode\s*\(\s*sha256\s*\(", re.I)
    while (m := pattern.search(sql, i)) is not None:
        depth, j = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        inner = sql[m.end():j - 1]  # x
        rest = re.match(r"\s*,\s*'hex'\s*\)", sql[j:])
        if rest is None:
            raise SystemExit("encode(sha256(...), <not 'hex'>) is not supported")
        out.append(sql[i:m.start()] + f"sha256({inner})")
        i = j + rest.end()
    out.append(sql[i:])
    return "".join(out)


MACROS = [
    # DataFusion's initcap: upper-case the first letter of each word.
    "CREATE OR REPLACE MACRO initcap(s) AS "
    "array_to_string(list_transform(string_split(lower(s), ' '), lambda w: upper(w[1]) || w[2:]), ' ')",
    # DataFusion's to_unixtime: whole seconds (BIGINT), the fraction dropped.
    "CREATE OR REPLACE MACRO to_unixtime(t) AS epoch_us(t) // 1000000",
]


# ----------------------------------------------------------------- silver

class Peer:
    def __init__(self, con, bronze, out, sql_dir, specs, incremental=False):
        self.incremental = incremental
        # (topic, partition, last offset) of every topic read: the next
        # incremental run's starting point.
        self.seen_now = []
        self.con = con
        self.bronze = bronze
        self.out = out
        self.sql_dir = sql_dir
        self.specs = specs
        self.topics = {}

    def sql(self, text):
        self.con.execute(text).fetchall()

    def scalar(self, text):
        return self.con.execute(text).fetchall()[0][0]

    def topic_rows(self, topic):
        """The topic's bronze rows as Arrow (partition pruned), read once."""
        if topic not in self.topics:
            self.topics[topic] = self.bronze.to_pyarrow_table(
                filters=[("topic", "=", topic)], columns=BRONZE_COLUMNS)
            self.con.register("topic__rows", self.topics[topic])
            self.seen_now += self.con.execute(
                f"SELECT {lit(topic)}, kafka_partition, max(kafka_offset) FROM topic__rows "
                "GROUP BY kafka_partition").fetchall()
            self.con.unregister("topic__rows")
        return self.topics[topic]

    def write(self, layer, name, relation, partition_by=None, order_by=None, mode="overwrite"):
        rel = self.con.sql(f"SELECT * FROM {relation}" + (f" ORDER BY {order_by}" if order_by else ""))
        reader = rel.arrow()
        write_deltalake(os.path.join(self.out, layer, name), reader, mode=mode,
                        partition_by=partition_by or None,
                        schema_mode="overwrite" if mode == "overwrite" else None)

    def load_silver(self, name):
        """The peer's silver table as the last run left it, into DuckDB."""
        if self.scalar(f"SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'silver' "
                       f"AND table_name = {lit(name)}"):
            return
        table = DeltaTable(os.path.join(self.out, "silver", name))
        rows = pa.table(QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all())
        self.con.register(f"loaded__{name}", rows)
        self.sql(f"CREATE TABLE silver.{q(name)} AS SELECT * FROM loaded__{name}")
        self.con.unregister(f"loaded__{name}")

    def merge(self, spec, body):
        """Replaces the affected keys' rows, in DuckDB and in the Delta
        table (one MERGE: rows of a key that are gone are deleted)."""
        name = spec["name"]
        keys = spec["keys"]
        ident = keys + ([spec["surrogate_key"]] if spec["kind"] == "scd2" else [])
        on = " AND ".join(f"t.{q(k)} = n.{q(k)}" for k in ident)
        self.sql(f"CREATE OR REPLACE TEMP TABLE new__{name} AS {body}")
        akeys = " AND ".join(f"t.{q(k)} = a.{q(k)}" for k in keys)
        self.sql(f"""CREATE OR REPLACE TEMP TABLE gone__{name} AS
            SELECT t.* FROM silver.{q(name)} t SEMI JOIN affected__{name} a ON {akeys}
            ANTI JOIN new__{name} n ON {on}""")
        source = self.con.sql(f"SELECT *, FALSE AS _gone FROM new__{name} "
                              f"UNION ALL BY NAME SELECT *, TRUE AS _gone FROM gone__{name}").arrow()
        columns = [c for c in self.con.table(f"new__{name}").columns]
        table = DeltaTable(os.path.join(self.out, "silver", name))
        predicate = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in ident)
        assign = {q(c): f"s.{q(c)}" for c in columns}
        (table.merge(source, predicate, source_alias="s", target_alias="t")
            .when_matched_delete(predicate="s._gone")
            .when_matched_update(updates=assign)
            .when_not_matched_insert(updates=assign, predicate="NOT s._gone")
            .execute())
        self.sql(f"DELETE FROM silver.{q(name)} t USING affected__{name} a WHERE {akeys}")
        self.sql(f"INSERT INTO silver.{q(name)} BY NAME SELECT * FROM new__{name}")
        for t in (f"new__{name}", f"gone__{name}", f"affected__{name}", f"rows__{name}",
                  f"fresh__{name}"):
            self.sql(f"DROP TABLE IF EXISTS {t}")
        self.sql(f"DROP VIEW {q(spec['source']['name'])}")
        self.con.unregister(f"bronze__{name}")
        print(f"  silver {name}: merged", file=sys.stderr)

    # A change's column: from `after` when the change has one (a column it
    # lacks comes from the key), else from `before`, else from the key.
    @staticmethod
    def column_value(c):
        c = lit(c)
        return (f"CASE WHEN after IS NOT NULL THEN CASE WHEN map_contains(after, {c}) "
                f"THEN after[{c}] ELSE \"key\"[{c}] END "
                f"ELSE coalesce(before[{c}], \"key\"[{c}]) END")

    def register_source(self, spec, only_new=False):
        src = spec["source"]
        rows = self.topic_rows(src["topic"])
        bronze = f"bronze__{spec['name']}"
        self.con.register(bronze, rows)
        if only_new:
            # The rows after the last run's Kafka positions (incremental).
            bronze = (f"(SELECT b.* FROM {bronze} b LEFT JOIN seen s "
                      f"ON s.topic = {lit(src['topic'])} AND s.kafka_partition = b.kafka_partition "
                      "WHERE s.kafka_offset IS NULL OR b.kafka_offset > s.kafka_offset)")
        cols = [f"CAST({self.column_value(c)} AS {ty}) AS {q(c)}" for c, ty in src["columns"].items()]
        typed = f"""
            SELECT {', '.join(cols)},
              (record_kind = 'tombstone' OR coalesce(op, '') = 'd'
               OR coalesce(after['__deleted'], '') = 'true') AS _is_delete,
              record_kind = 'tombstone' AS _is_tombstone,
              coalesce(op, '') = 't' AS _is_truncate,
              source_position AS _pos, source_ts_ms AS _ts,
              kafka_partition AS _kp, kafka_offset AS _ko
            FROM {bronze}"""
        if "sequence_by" in src:
            typed = (f"SELECT * REPLACE (CAST(({src['sequence_by']}) AS DECIMAL(38, 0)) AS _pos) "
                     f"FROM ({typed})")
        self.sql(f"CREATE OR REPLACE TEMP VIEW {q(src['name'])} AS {typed}")

    def shaped_sql(self, spec):
        """The table's SQL with the metadata columns carried through."""
        path = os.path.join(self.sql_dir, spec.get("sql", spec["name"] + ".sql"))
        with open(path) as f:
            sql = rewrite_encode_sha256(strip_comments(f.read())).strip().rstrip(";")
        source = spec["source"]["name"]
        m = list(re.finditer(rf"\bFROM\s+{re.escape(source)}\b", sql, re.I))
        if len(m) != 1:
            raise SystemExit(f"{path}: expected one `FROM {source}`")
        tail = sql[m[0].end():].strip()
        if tail:
            raise SystemExit(f"{path}: `{tail[:30]}...` after FROM is not supported by the peer")
        return sql[:m[0].start()] + ", " + ", ".join(META) + " " + sql[m[0].start():]

    def run_table(self, spec):
        name, kind = spec["name"], spec["kind"]
        t0 = time.monotonic()
        if kind == "date":
            return self.run_date(spec, t0)
        keys = spec["keys"]
        kcols = ", ".join(q(k) for k in keys)
        shaped = f"shaped__{name}"
        fresh = shaped
        if self.incremental:
            # dbt-style delete+insert by key: the keys the new rows touch
            # (and, for facts, rows still pointing at an unknown member) are
            # rebuilt from their whole history in bronze.
            self.register_source(spec, only_new=True)
            fresh = f"fresh__{name}"
            self.sql(f"CREATE OR REPLACE TEMP TABLE {fresh} AS {self.shaped_sql(spec)}")
            self.load_silver(name)
            not_null = " AND ".join(f"{q(k)} IS NOT NULL" for k in keys)
            unknown = " OR ".join(f"{q(lk['key'])} = -1" for lk in spec.get("lookups", []))
            repair = f" UNION SELECT {kcols} FROM silver.{q(name)} WHERE {unknown}" if unknown else ""
            self.sql(f"CREATE OR REPLACE TEMP TABLE affected__{name} AS "
                     f"SELECT DISTINCT {kcols} FROM {fresh} WHERE {not_null}{repair}")
        self.register_source(spec)
        self.sql(f"CREATE OR REPLACE TEMP TABLE {shaped} AS {self.shaped_sql(spec)}")
        if self.incremental:
            on = " AND ".join(f"s.{q(k)} = a.{q(k)}" for k in keys)
            self.sql(f"CREATE OR REPLACE TEMP TABLE {shaped} AS "
                     f"SELECT s.* FROM {shaped} s SEMI JOIN affected__{name} a ON {on}")
        data_cols = [c for c in self.con.table(shaped).columns if c not in META]
        if self.scalar(f"SELECT count(*) FROM {shaped} WHERE _is_truncate") > 0:
            print(f"  {name}: truncates are not applied by the peer", file=sys.stderr)

        # Null keys and expectations: upserts failing a rule are kept out.
        upsert = "NOT _is_delete AND NOT _is_truncate"
        rules = [("key_not_null", " AND ".join(f"{q(k)} IS NOT NULL" for k in keys), "drop")]
        rules += [(e["name"], e["expr"], e.get("action", "warn")) for e in spec.get("expectations", [])]
        passed = "TRUE"
        quarantine = []
        for rule, expr, action in rules:
            failing = f"{upsert} AND ({passed}) AND NOT coalesce(({expr}), FALSE)"
            # Quarantined: the failing rows of this run's new changes.
            n = self.scalar(f"SELECT count(*) FROM {fresh} WHERE {failing}")
            if n and action == "fail":
                raise SystemExit(f"{name}: expectation {rule} failed on {n} rows")
            if n and action == "drop":
                quarantine.append(f"SELECT * EXCLUDE ({', '.join(META)}), {lit(rule)} AS _rule, "
                                  f"_pos AS _seq, _ts AS _seq_ts FROM {fresh} WHERE {failing}")
            if n:
                print(f"  {name}: {n} rows fail {rule} ({action})", file=sys.stderr)
            if action == "drop":
                passed += f" AND coalesce(({expr}), FALSE)"
        if quarantine:
            self.sql(f"CREATE OR REPLACE TEMP TABLE q__{name} AS {' UNION ALL '.join(quarantine)}")
            self.write("silver", f"{name}_quarantine", f"q__{name}",
                       mode="append" if self.incremental else "overwrite")

        # The changes that apply, each with its sequence; a tombstone takes
        # the sequence of the record of its key before it in Kafka order.
        deletes = spec.get("deletes", "apply") == "apply"
        keep = f"({upsert} AND {passed})" + (f" OR (_is_delete AND {' AND '.join(f'{q(k)} IS NOT NULL' for k in keys)})"
                                             if deletes else "")
        tombstones = deletes and self.scalar(f"SELECT count(*) FROM {shaped} WHERE _is_tombstone") > 0
        if tombstones:
            seq = (f"""* REPLACE (
                CASE WHEN _is_tombstone THEN last_value(_pos IGNORE NULLS) OVER k ELSE _pos END AS _pos,
                CASE WHEN _is_tombstone THEN last_value(_ts IGNORE NULLS) OVER k ELSE _ts END AS _ts)""",
                   f"WINDOW k AS (PARTITION BY {kcols} ORDER BY _kp, _ko "
                   "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)")
        else:
            seq = ("*", "")
        changes = f"changes__{name}"
        self.sql(f"CREATE OR REPLACE TEMP TABLE {changes} AS "
                 f"SELECT {seq[0]} FROM {shaped} WHERE {keep} {seq[1]}")
        self.sql(f"DROP TABLE {shaped}")

        if kind == "scd2":
            rows = self.scd2(spec, changes, data_cols)
        else:
            rows = self.latest(spec, changes, data_cols)
        if kind == "fact":
            rows, lookup_keys, fetched = self.lookups(spec, rows)
        else:
            lookup_keys, fetched = [], []
        self.sql(f"CREATE OR REPLACE TEMP TABLE rows__{name} AS {rows}")
        self.sql(f"DROP TABLE {changes}")

        # Column order: keys, surrogate key, lookup keys, the other SQL
        # columns, fetched columns, SCD2 validity, _seq/_seq_ts.
        sk = spec.get("surrogate_key")
        others = [c for c in data_cols if c not in keys]
        head = keys + ([sk] if sk else []) + lookup_keys
        tail = ["valid_from", "valid_to", "is_current"] if kind == "scd2" else []
        select = [q(c) for c in head + others + fetched]
        select += [f"make_timestamptz({c}) AS {c}" for c in tail[:2]] + tail[2:]
        select += ["_seq", "_seq_ts"]
        body = f"SELECT {', '.join(select)} FROM rows__{name}"
        if self.incremental:
            self.merge(spec, body)
            return
        if sk and spec.get("unknown_member", True):
            unknown = [f"-1::BIGINT AS {q(sk)}" if c == sk else f"NULL AS {q(c)}"
                       for c in head + others + fetched]
            if kind == "scd2":
                unknown += [f"make_timestamptz({UNKNOWN_FROM_US}::BIGINT) AS valid_from",
                            f"make_timestamptz({END_OF_TIME_US}::BIGINT) AS valid_to",
                            "TRUE AS is_current"]
            unknown += ["NULL AS _seq", "NULL AS _seq_ts"]
            body = f"SELECT {', '.join(unknown)} UNION ALL BY NAME {body}"
        self.sql(f"CREATE OR REPLACE TABLE silver.{q(name)} AS {body}")
        self.sql(f"DROP TABLE rows__{name}")
        self.sql(f"DROP VIEW {q(spec['source']['name'])}")
        self.con.unregister(f"bronze__{name}")
        self.write("silver", name, f"silver.{q(name)}", spec.get("partition_by"), kcols)
        n = self.scalar(f"SELECT count(*) FROM silver.{q(name)}")
        print(f"  silver {name}: {n} rows in {time.monotonic() - t0:.2f}s", file=sys.stderr)

    def latest(self, spec, changes, data_cols):
        """SCD1 / facts: the last change per key wins (a delete beats an
        upsert of the same position); a key whose last change deletes is gone."""
        keys = spec["keys"]
        kcols = ", ".join(q(k) for k in keys)
        sk = spec.get("surrogate_key")
        skx = f", CAST(hash({kcols}) >> 1 AS BIGINT) AS {q(sk)}" if sk else ""
        return f"""
            SELECT * EXCLUDE (_rn, _is_delete, _pos, _ts){skx}, _pos AS _seq, _ts AS _seq_ts FROM (
              SELECT {', '.join(q(c) for c in data_cols)}, _is_delete, _pos, _ts,
                row_number() OVER (PARTITION BY {kcols}
                  ORDER BY _pos DESC NULLS LAST, _ts DESC NULLS LAST, _is_delete DESC, _kp, _ko) AS _rn
              FROM {changes})
            WHERE _rn = 1 AND NOT _is_delete"""

    def scd2(self, spec, changes, data_cols):
        """One version per change of the tracked columns; other changes update
        the current version in place; a delete closes it. valid_from is the
        source ts_ms of the change opening the version, valid_to the one of
        the change closing it."""
        keys = spec["keys"]
        kcols = ", ".join(q(k) for k in keys)
        sk = spec["surrogate_key"]
        tracked = " OR ".join(f"{q(c)} IS DISTINCT FROM lag({q(c)}) OVER w" for c in spec["track"])
        w = f"WINDOW w AS (PARTITION BY {kcols} ORDER BY _pos NULLS FIRST, _ts NULLS FIRST, _kp, _ko)"
        data = ", ".join(q(c) for c in data_cols)
        return f"""
            WITH ev AS (
              SELECT *,
                NOT _is_delete AND (coalesce(lag(_is_delete) OVER w, TRUE) OR {tracked}) AS _opens,
                lead(_ts) OVER w AS _next_ts, lead(_kp) OVER w IS NOT NULL AS _has_next
              FROM {changes} {w}),
            numbered AS (
              SELECT *, sum(CAST(_opens AS INT)) OVER (PARTITION BY {kcols}
                ORDER BY _pos NULLS FIRST, _ts NULLS FIRST, _kp, _ko ROWS UNBOUNDED PRECEDING) AS _version
              FROM ev),
            versions AS (
              SELECT {kcols}, _version,
                {''.join(f'arg_max({q(c)}, _row) AS {q(c)}, ' for c in data_cols if c not in keys)}
                arg_max(_pos, _row) AS _seq, arg_max(_ts, _row) AS _seq_ts,
                arg_min(_pos, _row) AS _open_pos, arg_min(_ts, _row) AS _open_ts,
                arg_max(_has_next, _row) AS _closed, arg_max(_next_ts, _row) AS _close_ts
              FROM (SELECT *, row_number() OVER (ORDER BY {kcols}, _pos NULLS FIRST, _ts NULLS FIRST, _kp, _ko) AS _row
                    FROM numbered WHERE NOT _is_delete AND _version > 0)
              GROUP BY {kcols}, _version)
            SELECT {data},
              CAST(hash({kcols}, _open_pos, _open_ts) >> 1 AS BIGINT) AS {q(sk)},
              coalesce(_open_ts * 1000, 0) AS valid_from,
              CASE WHEN _closed THEN greatest(coalesce(_close_ts * 1000, coalesce(_open_ts * 1000, 0)),
                                             coalesce(_open_ts * 1000, 0))
                   ELSE {END_OF_TIME_US} END AS valid_to,
              NOT _closed AS is_current, _seq, _seq_ts
            FROM versions"""

    def lookups(self, spec, rows):
        """The facts' lookups in spec order, over the latest rows."""
        lookup_keys, fetched = [], []
        rel = f"({rows})"
        for i, lk in enumerate(spec.get("lookups", [])):
            target = self.specs[lk["table"]]
            key = lk["key"]
            lookup_keys.append(key)
            if target["kind"] == "date":
                (col, _), = lk["on"].items()
                c = f"f.{q(col)}"
                rel = (f"(SELECT f.*, coalesce(CAST(year({c}) * 10000 + month({c}) * 100 + day({c}) AS BIGINT), -1) "
                       f"AS {q(key)} FROM {rel} f)")
                continue
            sk = target["surrogate_key"]
            dim = f"(SELECT * FROM silver.{q(lk['table'])} WHERE {q(sk)} <> -1)"
            cols = lk.get("columns", {})
            fetched += list(cols)
            join = lambda a: " AND ".join(f"f.{q(fc)} = {a}.{q(dc)}" for fc, dc in lk["on"].items())
            if target["kind"] != "scd2":
                picked = "".join(f", d.{q(dc)} AS {q(fc)}" for fc, dc in cols.items())
                rel = (f"(SELECT f.*, coalesce(d.{q(sk)}, -1) AS {q(key)}{picked} "
                       f"FROM {rel} f LEFT JOIN {dim} d ON {join('d')})")
                continue
            dkeys = ", ".join(q(dc) for dc in lk["on"].values())
            ends = (f"(SELECT *, row_number() OVER (PARTITION BY {dkeys} ORDER BY valid_from) AS _first, "
                    f"row_number() OVER (PARTITION BY {dkeys} ORDER BY valid_from DESC) AS _last FROM {dim})")
            if "as_of" in lk:
                t = f"epoch_us(f.{q(lk['as_of'])})"
                valid = f"{t} >= epoch_us(m.valid_from) AND {t} < epoch_us(m.valid_to)"
                before_first = f"{t} < epoch_us(e.valid_from)"
            else:
                valid, before_first = "m.is_current", "FALSE"
            pick = lambda c: f"CASE WHEN m.{q(sk)} IS NOT NULL THEN m.{c} WHEN {before_first} THEN e.{c} ELSE l.{c} END"
            picked = "".join(f", {pick(q(dc))} AS {q(fc)}" for fc, dc in cols.items())
            rel = (f"(SELECT f.*, coalesce({pick(q(sk))}, -1) AS {q(key)}{picked} FROM {rel} f "
                   f"LEFT JOIN {dim} m ON {join('m')} AND {valid} "
                   f"LEFT JOIN (SELECT * FROM {ends} WHERE _first = 1) e ON {join('e')} "
                   f"LEFT JOIN (SELECT * FROM {ends} WHERE _last = 1) l ON {join('l')})")
        return f"SELECT * FROM {rel}", lookup_keys, fetched

    def run_date(self, spec, t0):
        name = spec["name"]
        covers = spec["date"]["covers"]
        parts = [f"SELECT min({q(c)}) AS lo, max({q(c)}) AS hi FROM silver.{q(t)}"
                 for t, c in (x.split(".", 1) for x in covers)]
        lo, hi = self.con.execute(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})").fetchall()[0]
        lo = spec["date"].get("from", lo)
        hi = spec["date"].get("to", hi)
        days = ("SELECT NULL::DATE AS d WHERE FALSE" if lo is None else
                f"SELECT CAST(range AS DATE) AS d FROM range(DATE '{lo}', DATE '{hi}' + INTERVAL 1 DAY, INTERVAL 1 DAY)")
        self.sql(f"""CREATE OR REPLACE TABLE silver.{q(name)} AS
            SELECT -1::BIGINT AS date_key, NULL::DATE AS date, NULL::INT AS year, NULL::INT AS quarter,
                   NULL::INT AS month, NULL::VARCHAR AS month_name, NULL::VARCHAR AS year_month,
                   NULL::INT AS day, NULL::INT AS day_of_week, NULL::VARCHAR AS day_name,
                   NULL::INT AS week_of_year, NULL::BOOLEAN AS is_weekend
            UNION ALL
            SELECT CAST(year(d) * 10000 + month(d) * 100 + day(d) AS BIGINT), d, year(d)::INT,
                   quarter(d)::INT, month(d)::INT, monthname(d), strftime(d, '%Y-%m'), day(d)::INT,
                   isodow(d)::INT, dayname(d), week(d)::INT, isodow(d) >= 6
            FROM ({days})""")
        self.write("silver", name, f"silver.{q(name)}", order_by="date_key")
        n = self.scalar(f"SELECT count(*) FROM silver.{q(name)}")
        print(f"  silver {name}: {n} rows in {time.monotonic() - t0:.2f}s", file=sys.stderr)


def run_gold(peer, layers, sql_dir):
    peer.sql("SET search_path = 'silver'")
    for name, spec in load_specs(layers).items():
        path = os.path.join(sql_dir, spec.get("sql", name + ".sql"))
        with open(path) as f:
            sql = f.read()
        if "lakehouse_" in sql:  # system tables (pipeline_health): no DuckDB equivalent
            print(f"  gold {name}: skipped (reads the lakehouse system tables)", file=sys.stderr)
            continue
        t0 = time.monotonic()
        peer.sql(f"CREATE OR REPLACE TEMP TABLE gold__{name} AS {strip_comments(sql)}")
        order = ", ".join(q(k) for k in spec["keys"])
        part = spec.get("partition_by")
        peer.write("gold", name, f"gold__{name}", [part] if part else None, order)
        n = peer.scalar(f"SELECT count(*) FROM gold__{name}")
        peer.sql(f"DROP TABLE gold__{name}")
        print(f"  gold {name}: {n} rows in {time.monotonic() - t0:.2f}s", file=sys.stderr)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bronze", help="path of the bronze_events Delta table")
    ap.add_argument("out", help="storage root for the peer's silver/ and gold/ tables")
    ap.add_argument("--layers", default=os.path.join(repo, "layers"))
    ap.add_argument("--sql", default=os.path.join(repo, "sql"))
    ap.add_argument("--threads", type=int)
    ap.add_argument("--memory-limit")
    ap.add_argument("--skip-gold", action="store_true")
    ap.add_argument("--incremental", action="store_true",
                    help="apply the bronze rows after the last run's positions (dbt-style "
                         "delete+insert of the keys they touch, rebuilt from their history)")
    args = ap.parse_args()

    started = time.monotonic()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    for macro in MACROS:
        con.execute(macro).fetchall()
    # Silver tables live in their own schema: several have the name of
    # their source view (orders, inventory), which the table's SQL reads.
    con.execute("CREATE SCHEMA silver").fetchall()
    specs = load_specs(os.path.join(args.layers, "silver"))
    state_file = os.path.join(args.out, "_peer_state.json")
    con.execute("CREATE TABLE seen (topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT)")
    if args.incremental:
        with open(state_file) as f:
            for row in json.load(f)["seen"]:
                con.execute("INSERT INTO seen VALUES (?, ?, ?)", row)
    peer = Peer(con, DeltaTable(args.bronze), args.out, os.path.join(args.sql, "silver"), specs,
                incremental=args.incremental)
    for name in silver_order(specs):
        peer.run_table(specs[name])
    with open(state_file, "w") as f:
        json.dump({"seen": peer.seen_now}, f)
    peer.topics.clear()
    print(f"silver peer: {len(specs)} tables in {time.monotonic() - started:.2f}s", file=sys.stderr)
    if not args.skip_gold:
        t0 = time.monotonic()
        run_gold(peer, os.path.join(args.layers, "gold"), os.path.join(args.sql, "gold"))
        print(f"gold peer: built in {time.monotonic() - t0:.2f}s", file=sys.stderr)
    print(f"duckdb peer: {time.monotonic() - started:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
