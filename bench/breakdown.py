"""Where secure-cp's CPU per MeterValues round trip goes: ``python -m bench.breakdown [--n 2000]``.

cProfile's per-call overhead inflates pure-Python code (recursive encoders most of all), so this measures the
steps one (c) round trip performs, each on its own in a loop with ``time.process_time()`` (CPU, user + sys),
on the same payload and a real store in a temporary directory. Per round trip the adapter does each step the
number of times shown in "x/RT" (read from the code path: Engine.trigger_meter -> Ocpp16Adapter.poll ->
outbox -> Endpoint.send_call -> transport; CALLRESULT -> Endpoint.receive -> outbox.remove -> poll).
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Callable

from .common import FakeMeter, ID_TAG, UniqueMs, meter_values_payload, rfc3339_ms


def _cpu_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(50, n)):
        fn()
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e6


def _commit_cpu_us(path: Path, synchronous: str, n: int) -> float:
    """CPU of one small committed UPDATE with a given ``PRAGMA synchronous`` (WAL, as the store uses)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v INTEGER)")
    conn.execute("INSERT OR REPLACE INTO t VALUES (1, 0)")

    def step() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET v = v + 1 WHERE k = 1")
        conn.execute("COMMIT")
    try:
        return _cpu_us(step, n)
    finally:
        conn.close()


def breakdown(n: int = 2000) -> list[tuple[str, int, float]]:
    """Rows (step, times per round trip, CPU us per call)."""
    from secure_cp.engine.model import SampledValue, Sample
    from secure_cp.rpc import SchemaRegistry
    from secure_cp.rpc.frames import Call, decode, encode
    from secure_cp.store import Database, Outbox, Transactions, TxRecord, json_dumps
    from secure_cp.v16 import messages

    rows: list[tuple[str, int, float]] = []
    clock = UniqueMs()
    meter = FakeMeter()
    payload = meter_values_payload(1, 7, rfc3339_ms(clock()), meter.sampled_values())
    # the adapter's own form: values are Decimal text, built from an engine Sample
    sample = Sample(clock(), "Trigger", tuple(SampledValue(sv["measurand"], Decimal(sv["value"]), sv.get("unit"))
                                              for sv in payload["meterValue"][0]["sampledValue"]))
    registry = SchemaRegistry("1.6")
    text = encode(Call(str(uuid.uuid4()), "MeterValues", payload))

    rows.append(("build payload (v16.messages.meter_values)", 1,
                 _cpu_us(lambda: messages.meter_values(1, (sample,)), n)))
    rows.append(("schema validation MeterValues.req (fastjsonschema)", 2,
                 _cpu_us(lambda: registry.validate_request("MeterValues", payload), n)))
    rows.append(("schema validation MeterValues.conf", 1,
                 _cpu_us(lambda: registry.validate_response("MeterValues", {}), n)))
    rows.append(("store.json_dumps (pure-Python encoder) for the outbox", 1, _cpu_us(lambda: json_dumps(payload), n)))
    rows.append(("  for comparison: json.dumps(separators=(',', ':'))", 0,
                 _cpu_us(lambda: json.dumps(payload, separators=(",", ":")), n)))
    rows.append(("rpc.frames.encode (pure-Python encoder) of the CALL", 1,
                 _cpu_us(lambda: encode(Call("0a1b2c3d-0000-4000-8000-000000000000", "MeterValues", payload)), n)))
    rows.append(("rpc.frames.decode of the CALLRESULT", 1, _cpu_us(lambda: decode('[3,"x",{}]', version="1.6"), n)))
    rows.append(("  for comparison: json.loads of the whole CALL", 0, _cpu_us(lambda: json.loads(text), n)))

    with tempfile.TemporaryDirectory(prefix="secure-cp-breakdown-") as tmp:
        db = Database(Path(tmp) / "station.db")
        try:
            tx = Transactions(db)
            box = Outbox(db)
            key = uuid.uuid4().hex
            tx.create(TxRecord(tx_key=key, evse_id=1, connector_id=1, id_tag=ID_TAG, started_at=rfc3339_ms(clock()),
                               meter_start_wh=0, protocol="1.6", transaction_id="7"))
            wh = iter(range(10**9))
            rows.append(("Transactions.update(last_meter_wh) - commit, synchronous=FULL", 1,
                         _cpu_us(lambda: tx.update(key, last_meter_wh=next(wh), last_meter_at=rfc3339_ms(clock())), n)))
            rows.append(("Transactions.get (SELECT + JSON extra)", 2, _cpu_us(lambda: tx.get(key), n)))

            def append_remove() -> None:
                seq = box.append("MeterValues", payload, tx_key=key, now=clock())
                box.remove(seq)
            both = _cpu_us(append_remove, n)
            seq = box.append("MeterValues", payload, tx_key=key, now=clock())
            rows.append(("Outbox.head / Outbox.get (SELECT + JSON payload, Decimal)", 3,
                         _cpu_us(lambda: box.get(seq), n)))
            box.remove(seq)
            rows.append(("Outbox.append + Outbox.remove - 2 commits, synchronous=FULL", 1, both))
        finally:
            db.close()
        rows.append(("  for comparison: bare SQLite commit, WAL, synchronous=FULL", 0,
                     _commit_cpu_us(Path(tmp) / "full.db", "FULL", n)))
        rows.append(("  for comparison: bare SQLite commit, WAL, synchronous=NORMAL", 0,
                     _commit_cpu_us(Path(tmp) / "normal.db", "NORMAL", n)))
    return rows


def format_rows(rows: list[tuple[str, int, float]]) -> str:
    out = [f"  {'step':<64} {'x/RT':>4} {'CPU us/call':>11} {'us/RT':>8}"]
    total = 0.0
    for name, times, us in rows:
        total += times * us
        if times:
            out.append(f"  {name:<64} {times:>4} {us:>11.1f} {times * us:>8.1f}")
        else:
            out.append(f"  {name:<64} {'':>4} {us:>11.1f}")
    out.append(f"  {'sum of the steps above (x/RT > 0)':<64} {'':>4} {'':>11} {total:>8.1f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    a = p.parse_args(argv)
    print(format_rows(breakdown(a.n)))


if __name__ == "__main__":
    main()
