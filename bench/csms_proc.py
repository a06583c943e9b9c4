"""The CSMS in a process of its own: ``python -m bench.csms_proc``.

It is the project's strict CSMS (``secure_cp.sim.csms.Csms``: the ``ocpp`` package plus full schema
validation), the same server for all three round-trip clients so that the comparison is fair, and in its own
process so that its CPU is never counted as the station's.

It accepts both versions (``ocpp2.0.1`` preferred, ``ocpp1.6``): a client gets the one it offers.

Protocol on stdin/stdout (one JSON object per line): on start it prints ``{"url": ...}``; each line ``stats``
on stdin is answered with what it has seen (violations, duplicates, per-station action counts, the shape of
the last MeterValues / TransactionEvent Updated per station, the 2.0.1 TransactionEvent ledger: events and
missing seqNos per transaction, its own CPU time); end of stdin stops it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter, defaultdict


def _stats(csms) -> dict:
    actions: dict[str, Counter] = defaultdict(Counter)
    last_mv: dict[str, dict] = {}
    last_te: dict[str, dict] = {}
    for r in csms.received:
        actions[r.identity][r.action] += 1
        if r.action == "MeterValues":
            last_mv[r.identity] = r.payload
        elif r.action == "TransactionEvent" and r.payload.get("eventType") == "Updated":
            last_te[r.identity] = r.payload
    return {
        "violations": len(csms.violations),
        "violation_samples": csms.violations[:5],
        "duplicates": len(csms.duplicates),
        "refused": len(csms.refused),
        "actions": {k: dict(v) for k, v in actions.items()},
        "meter_values_shape": _shapes(last_mv),
        "transaction_event_shape": _shapes(last_te),
        "transactions201": {tid: {"identity": tx.identity, "events": len(tx.events),
                                  "trigger_reasons": dict(Counter(e["triggerReason"] for e in tx.events)),
                                  "seq_gaps": len(tx.seq_gaps())}
                            for tid, tx in csms.transactions201.items()},
        "cpu_s": time.process_time(),
    }


def _shapes(last: dict[str, dict]) -> dict:
    """Per station: meterValues, sampledValues in the first, compact JSON bytes of the last such payload."""
    shapes = {}
    for identity, payload in last.items():
        mv = payload.get("meterValue", [])
        shapes[identity] = {
            "meter_values": len(mv),
            "sampled_values": len(mv[0].get("sampledValue", [])) if mv else 0,
            "bytes": len(json.dumps(payload, separators=(",", ":"), default=str)),
        }
    return shapes


async def _main() -> None:
    from secure_cp.sim.csms import Csms

    async with Csms("127.0.0.1", 0) as csms:
        print(json.dumps({"url": csms.url}), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            if line.strip() == "stats":
                print(json.dumps(_stats(csms)), flush=True)


def main() -> None:
    logging.basicConfig(level=logging.ERROR, format="csms: %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main())


if __name__ == "__main__":
    main()
