#!/usr/bin/env python3
"""Did the peers do the same work? Compares our tables with the peers'.

    compare.py OURS_LAKE PEER_LAKE [--layers DIR] [--bronze] [--show 5]

Per table (bronze_events with --bronze, every silver table and gold mart the
peer wrote): row counts, column names and types, then the rows as a multiset
(EXCEPT ALL both ways), printing a few rows found on one side only.

Surrogate keys are generated differently (ours: FNV of the business key /
of the key and the opening change; the peer: DuckDB hash()), so each
surrogate key column, in the dimension itself and in the facts' lookup
keys, is replaced by what it stands for in its own lake: the business key
(SCD1) or the business key and `valid_from` (SCD2 version), `-1` staying
`-1`. A fact that points to the wrong version therefore shows as a
difference. Doubles are compared rounded to 9 decimals; bronze's
ingested_at and batch_id are left out. Exit status 1 when anything differs.
"""

import argparse
import os
import sys
import tomllib

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder


def q(name):
    return '"' + name.replace('"', '""') + '"'


def load(path):
    try:
        table = DeltaTable(path)
    except Exception:  # noqa: BLE001 - no table there
        return None
    # deltalake's pyarrow reader refuses deletion vectors (silver tables
    # of an incremental run have them); its DataFusion reader applies them.
    rows = QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all()
    return pa.table(rows)


def specs_of(directory):
    out = {}
    for f in sorted(os.listdir(directory)):
        if f.endswith(".toml"):
            with open(os.path.join(directory, f), "rb") as fh:
                out[f[:-5]] = tomllib.load(fh)
    return out


class Comparer:
    def __init__(self, show):
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'").fetchall()
        self.show = show
        self.failed = []
        self.rows = []

    def run(self, sql):
        return self.con.execute(sql).fetchall()

    def identity_map(self, side, table, spec):
        """sk → text of what it stands for, in the lake `side`."""
        sk = q(spec["surrogate_key"])
        parts = [f"CAST({q(k)} AS VARCHAR)" for k in spec["keys"]]
        if spec["kind"] == "scd2":
            parts.append("strftime(valid_from, '%Y-%m-%dT%H:%M:%S.%f')")
        ident = f"CASE WHEN {sk} = -1 THEN '-1' ELSE concat_ws('|', {', '.join(parts)}) END"
        self.run(f"CREATE OR REPLACE TABLE map_{side}_{table} AS "
                 f"SELECT {sk} AS sk, {ident} AS ident FROM {side}_{table}")

    def compare(self, layer, name, ours, peer, sk_columns=(), drop=()):
        """sk_columns: (column, dimension) pairs to map; drop: columns left out."""
        label = f"{layer}.{name}"
        if ours is None or peer is None:
            self.rows.append((label, ours and ours.num_rows, peer and peer.num_rows, "missing table"))
            self.failed.append(label)
            return
        self.con.register(f"ours_{name}_arrow", ours)
        self.con.register(f"peer_{name}_arrow", peer)
        notes = []
        ours_types = {f.name: f.type for f in ours.schema}
        peer_types = {f.name: f.type for f in peer.schema}
        only = sorted(set(ours_types) ^ set(peer_types))
        if only:
            notes.append(f"columns on one side only: {only}")
        if [c for c in ours.column_names if c in peer_types] != [c for c in peer.column_names if c in ours_types]:
            notes.append("column order differs")
        common = [c for c in ours.column_names if c in peer_types and c not in drop]
        for c in common:
            if ours_types[c] != peer_types[c]:
                notes.append(f"type {c}: ours {ours_types[c]}, peer {peer_types[c]}")
        sk_of = dict(sk_columns)
        rel = self.con.table(f"ours_{name}_arrow")
        duck_types = dict(zip(rel.columns, (str(t) for t in rel.dtypes)))
        for side in ("ours", "peer"):
            select = []
            for c in common:
                if c in sk_of:
                    dim = sk_of[c]
                    select.append(f"coalesce((SELECT ident FROM map_{side}_{dim} m WHERE m.sk = t.{q(c)}), "
                                  f"'?' || CAST(t.{q(c)} AS VARCHAR)) AS {q(c)}")
                elif str(ours_types[c]) in ("double", "float"):
                    select.append(f"round(t.{q(c)}, 9) AS {q(c)}")
                elif side == "peer" and ours_types[c] != peer_types[c]:
                    # Compare the values as ours types them.
                    select.append(f"TRY_CAST(t.{q(c)} AS {duck_types[c]}) AS {q(c)}")
                else:
                    select.append(f"t.{q(c)}")
            self.run(f"CREATE OR REPLACE TABLE {side}_{name} AS SELECT {', '.join(select)} FROM {side}_{name}_arrow t")
        cols = ", ".join(q(c) for c in common)
        only_ours = self.run(f"SELECT count(*) FROM (SELECT {cols} FROM ours_{name} EXCEPT ALL SELECT {cols} FROM peer_{name})")[0][0]
        only_peer = self.run(f"SELECT count(*) FROM (SELECT {cols} FROM peer_{name} EXCEPT ALL SELECT {cols} FROM ours_{name})")[0][0]
        status = "identical" if not (only_ours or only_peer) else f"{only_ours} rows only in ours, {only_peer} only in peer's"
        if only_ours or only_peer:
            self.failed.append(label)
            for side, other in (("ours", "peer"), ("peer", "ours")):
                sample = self.con.execute(
                    f"SELECT * FROM (SELECT {cols} FROM {side}_{name} EXCEPT ALL SELECT {cols} FROM {other}_{name}) "
                    f"ORDER BY ALL LIMIT {self.show}")
                names = [d[0] for d in sample.description]
                for row in sample.fetchall():
                    notes.append(f"only {side}: " + ", ".join(f"{n}={v}" for n, v in zip(names, row)))
        self.rows.append((label, ours.num_rows, peer.num_rows, status))
        for n in notes:
            print(f"  {label}: {n}")
        self.con.unregister(f"ours_{name}_arrow")
        self.con.unregister(f"peer_{name}_arrow")

    def report(self):
        w = max(len(r[0]) for r in self.rows)
        print(f"{'table':<{w}}  {'ours':>9}  {'peer':>9}  result")
        for label, a, b, status in self.rows:
            print(f"{label:<{w}}  {a if a is not None else '-':>9}  {b if b is not None else '-':>9}  {status}")


def main():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--layers", default=os.path.join(repo, "layers"))
    ap.add_argument("--bronze", action="store_true", help="compare bronze_events (the Python bronze peer)")
    ap.add_argument("--no-silver", action="store_true", help="skip silver and gold")
    ap.add_argument("--show", type=int, default=5, help="rows shown per side of a difference")
    args = ap.parse_args()
    c = Comparer(args.show)

    if args.bronze:
        c.compare("bronze", "bronze_events",
                  load(os.path.join(args.ours, "bronze", "bronze_events")),
                  load(os.path.join(args.peer, "bronze", "bronze_events")),
                  drop=("ingested_at", "batch_id"))
    if not args.no_silver:
        silver = specs_of(os.path.join(args.layers, "silver"))
        tables = {}
        for name in silver:
            tables[name] = (load(os.path.join(args.ours, "silver", name)),
                            load(os.path.join(args.peer, "silver", name)))
        # Surrogate key maps of the dimensions, in each lake.
        for name, spec in silver.items():
            if spec.get("surrogate_key") and all(t is not None for t in tables[name]):
                for side, t in zip(("ours", "peer"), tables[name]):
                    c.con.register(f"{side}_{name}", t)
                    c.identity_map(side, name, spec)
                    c.con.unregister(f"{side}_{name}")
        for name, spec in silver.items():
            sks = []
            if spec.get("surrogate_key"):
                sks.append((spec["surrogate_key"], name))
            for lk in spec.get("lookups", []):
                target = silver.get(lk["table"], {})
                if target.get("surrogate_key"):
                    sks.append((lk["key"], lk["table"]))
            c.compare("silver", name, *tables[name], sk_columns=sks)
            if spec.get("expectations"):
                qo = load(os.path.join(args.ours, "silver", name + "_quarantine"))
                qp = load(os.path.join(args.peer, "silver", name + "_quarantine"))
                if (qo is not None and qo.num_rows) or (qp is not None and qp.num_rows):
                    c.rows.append((f"silver.{name}_quarantine", qo and qo.num_rows, qp and qp.num_rows,
                                   "row counts only"))
        gold = specs_of(os.path.join(args.layers, "gold"))
        for name in gold:
            peer = load(os.path.join(args.peer, "gold", name))
            if peer is None:
                print(f"  gold.{name}: not built by the peer, skipped")
                continue
            c.compare("gold", name, load(os.path.join(args.ours, "gold", name)), peer)
    c.report()
    if c.failed:
        print(f"{len(c.failed)} tables differ: {', '.join(c.failed)}")
        sys.exit(1)
    print("all compared tables identical")


if __name__ == "__main__":
    main()
