"""The `secure-cp` command: run the service, run the demo, inspect the store."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from . import logsetup
from .config import ConfigError, load


def _cmd_run(args) -> int:
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"secure-cp: configuration error: {exc}", file=sys.stderr)
        return 2
    logsetup.setup(args.log_level or cfg.log_level, "json" if args.json_logs else cfg.log_format)
    from .runtime import Station
    from .store import StoreError

    async def main() -> int:
        try:
            station = Station(cfg)
        except StoreError as exc:
            print(f"secure-cp: store error: {exc}", file=sys.stderr)
            return 3
        except ValueError as exc:   # e.g. an [ocpp] key the station does not know, or a value it rejects
            print(f"secure-cp: configuration error: {exc}", file=sys.stderr)
            return 2
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(station.stop()))
        api = None
        if cfg.simulator_api:
            from .sim.api import SimulatorApi
            host, _, port = cfg.simulator_api.rpartition(":")
            api = SimulatorApi(station, host, int(port))
            await api.start()
        from . import systemd
        systemd.notify("READY=1")
        dog = asyncio.create_task(systemd.watchdog())
        try:
            await station.run()
        finally:
            systemd.notify("STOPPING=1")
            dog.cancel()
            if api is not None:
                await api.stop()
        return 0
    return asyncio.run(main())


def _outbox_rows_readonly(db_path: Path) -> list[dict]:
    """Read the outbox of a running station: a read-only SQLite connection needs no store lock (WAL readers
    never block the writer), so operators can look while the station keeps delivering."""
    import sqlite3
    from .store.db import json_loads
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, status, action, attempts, tx_key, last_error, payload FROM outbox "
                            "ORDER BY status DESC, seq").fetchall()
    finally:
        conn.close()
    return [{"seq": r[0], "status": r[1], "action": r[2], "attempts": r[3], "tx": r[4], "error": r[5],
             "payload": json_loads(r[6])} for r in rows]


def _cmd_outbox(args) -> int:
    db_path = Path(args.data_dir) / "station.db"
    if not db_path.exists():
        print(f"secure-cp: no station store at {db_path}", file=sys.stderr)
        return 2
    if args.retry is not None:   # a write: only with the station stopped (the store lock says so clearly)
        from .store import Database, Outbox, StoreError
        try:
            db = Database(db_path)
        except StoreError as exc:
            print(f"secure-cp: {exc}", file=sys.stderr)
            return 3
        try:
            n = Outbox(db).retry_failed(None if args.retry == "all" else int(args.retry))
        finally:
            db.close()
        print(f"{n} message(s) queued again")
        return 0
    rows = _outbox_rows_readonly(db_path)
    if args.failed:
        rows = [r for r in rows if r["status"] == "failed"]
    for row in rows:
        print(json.dumps(row, default=str))
    pending = sum(1 for r in rows if r["status"] == "pending")
    failed = sum(1 for r in rows if r["status"] == "failed")
    print(f"# {pending} pending, {failed} given up", file=sys.stderr)
    return 0


def _cmd_demo(args) -> int:
    logsetup.setup(args.log_level or "WARNING", "text")
    from .sim.demo import run_demo
    return asyncio.run(run_demo(verbose=args.verbose, seconds=args.seconds, protocol=args.protocol))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="secure-cp", description="OCPP charging-station stack and simulator")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the station service")
    r.add_argument("--config", required=True, help="station TOML file")
    r.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    r.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    r.set_defaults(func=_cmd_run)
    d = sub.add_parser("demo", help="a full charging session against an embedded CSMS")
    d.add_argument("--seconds", type=float, default=8.0, help="how long the EV charges")
    d.add_argument("--verbose", action="store_true", help="print every OCPP frame")
    d.add_argument("--protocol", choices=["ocpp1.6", "ocpp2.0.1"], default="ocpp1.6", help="OCPP version to run")
    d.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    d.set_defaults(func=_cmd_demo)
    o = sub.add_parser("outbox", help="list queued and given-up transaction messages")
    o.add_argument("--data-dir", required=True)
    o.add_argument("--failed", action="store_true", help="only the given-up ones")
    o.add_argument("--retry", metavar="SEQ|all", help="queue given-up messages again")
    o.set_defaults(func=_cmd_outbox)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
