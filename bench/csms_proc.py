"""The CSMS in a process of its own: ``python -m bench.csms_proc``.

It is the project's strict CSMS (``secure_cp.sim.csms.Csms``: the ``ocpp`` package plus full schema
validation), the same server for all three round-trip clients so that the comparison is fair, and in its own
process so that its CPU is never counted as the station's.

Protocol on stdin/stdout (one JSON object per line): on start it prints ``{"url": ...}``; each line ``stats``
on stdin is answered with what it has seen (violations, duplicates, per-station action counts, the shape of
the last MeterValues per station, its own CPU time); end of stdin stops it.
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
    for r in csms.received:
        actions[r.identity][r.action] += 1
        if r.action == "MeterValues":
            last_mv[r.identity] = r.payload
    shapes = {}
    for identity, payload in last_mv.items():
        mv = payload.get("meterValue", [])
        shapes[identity] = {
            "meter_values": len(mv),
            "sampled_values": len(mv[0].get("sampledValue", [])) if mv else 0,
            "bytes": len(json.dumps(payload, separators=(",", ":"))),
        }
    return {
        "violations": len(csms.violations),
        "violation_samples": csms.violations[:5],
        "duplicates": len(csms.duplicates),
        "refused": len(csms.refused),
        "actions": {k: dict(v) for k, v in actions.items()},
        "meter_values_shape": shapes,
        "cpu_s": time.process_time(),
    }


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
