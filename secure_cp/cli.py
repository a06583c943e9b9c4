"""The `secure-cp` command: run the service, run the demo, inspect the store."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
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


def _cmd_audit(args) -> int:
    """Verify OCMF records / a transparency XML file: 0 all good, 1 a check failed, 2 unreadable input."""
    from .eichrecht.meterkeys import PublicKeyError
    from .eichrecht.transparency import TransparencyError
    from .eichrecht.verify import audit_text
    try:
        text = Path(args.file).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        print(f"secure-cp audit: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"secure-cp audit: {args.file} is not UTF-8 text: {exc}", file=sys.stderr)
        return 2
    try:
        report = audit_text(text, args.public_key)
    except TransparencyError as exc:
        print(f"secure-cp audit: {args.file}: {exc}", file=sys.stderr)
        return 2
    except PublicKeyError as exc:
        print(f"secure-cp audit: --public-key: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render_text())
    return 0 if report.ok else 1


def _export_time(text: str, option: str) -> float:
    """An ISO 8601 date or date-time of --from / --to as epoch seconds (without a zone: UTC)."""
    import datetime as dt
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r}: not an ISO 8601 date or date-time (e.g. 2025-03-01T00:00:00Z)") \
            from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def _cmd_export(args) -> int:
    """Write the legal-log records of one transaction, or of a time range (--from inclusive, --to exclusive, by
    when the station logged them), as a transparency XML file (read-only on the store)."""
    from .eichrecht.legallog import LegalLog, ReadOnlyStore
    from .eichrecht.transparency import write_transparency_xml
    from .eichrecht.verify import entries_for
    ranged = args.start is not None or args.end is not None
    if ranged == (args.transaction is not None):
        print("secure-cp export: give either --transaction ID or --from/--to", file=sys.stderr)
        return 2
    try:
        start = _export_time(args.start, "--from") if args.start is not None else float("-inf")
        end = _export_time(args.end, "--to") if args.end is not None else float("inf")
    except ValueError as exc:
        print(f"secure-cp export: {exc}", file=sys.stderr)
        return 2
    if start >= end:
        print("secure-cp export: --from must be before --to", file=sys.stderr)
        return 2
    try:
        with ReadOnlyStore(Path(args.data_dir) / "station.db") as store:
            if not store.has_table("legal_log"):
                print("secure-cp export: the store has no legal log yet (start the station once)", file=sys.stderr)
                return 2
            log_ = LegalLog(store)
            records = log_.between(start, end) if ranged else log_.of_transaction(args.transaction)
    except (FileNotFoundError, sqlite3.Error) as exc:
        print(f"secure-cp export: {exc}", file=sys.stderr)
        return 2
    if not records:
        what = "in that time range" if ranged else f"of transaction {args.transaction!r}"
        print(f"secure-cp export: no signed records {what}", file=sys.stderr)
        return 1
    text = write_transparency_xml(entries_for(records))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(records)} record(s) written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_meter_key(args) -> int:
    """Print the meters' current public keys: hex DER, the OCA publicKey value, and the label display string."""
    from .eichrecht.legallog import ReadOnlyStore
    from .eichrecht.meterkeys import MeterKeys
    try:
        with ReadOnlyStore(Path(args.data_dir) / "station.db") as store:
            keys = MeterKeys(store).history() if args.history else MeterKeys(store).all_current()
    except (FileNotFoundError, sqlite3.Error) as exc:
        print(f"secure-cp meter-key: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print("secure-cp meter-key: no meter public key registered", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([k.as_dict() for k in keys], indent=2))
        return 0
    for k in keys:
        d = k.as_dict()
        where = f"EVSE {k.evse_id} connector {k.connector_id}" if k.evse_id is not None else "station"
        state = "current" if k.retired_at is None else "retired"
        print(f"meter {k.meter} ({where}, serial {k.serial or '-'}, {state})")
        print(f"  public key (DER hex): {k.public_key}")
        print(f"  OCPP publicKey:      {d['oca']}")
        print("  label:")
        print("\n".join("    " + line for line in d["display"].splitlines()))
    return 0


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
    a = sub.add_parser("audit", help="verify OCMF records (one per line) or a S.A.F.E. transparency XML file")
    a.add_argument("file")
    a.add_argument("--json", action="store_true", help="the report as JSON")
    a.add_argument("--public-key", metavar="HEX", help="public key (hex DER) for records without their own")
    a.set_defaults(func=_cmd_audit)
    e = sub.add_parser("export", help="the signed records of a transaction or a time range as a transparency XML file")
    e.add_argument("--data-dir", required=True)
    e.add_argument("--transaction", metavar="ID", help="the CSMS's transaction id or the tx key")
    e.add_argument("--from", dest="start", metavar="ISO", help="records logged at or after this time (ISO 8601)")
    e.add_argument("--to", dest="end", metavar="ISO", help="records logged before this time (ISO 8601)")
    e.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    e.set_defaults(func=_cmd_export)
    m = sub.add_parser("meter-key", help="the meters' public keys, with a display string for the label")
    m.add_argument("--data-dir", required=True)
    m.add_argument("--json", action="store_true")
    m.add_argument("--history", action="store_true", help="also the keys of swapped meters")
    m.set_defaults(func=_cmd_meter_key)
    from .cli_security import add_parsers as add_security_parsers   # keys ..., certs ... (commissioning)
    add_security_parsers(sub)
    args = p.parse_args(argv)
    if args.cmd == "run":
        _prepare_openssl(args.config, sys.argv[1:] if argv is None else argv)
    return args.func(args)


def _prepare_openssl(config: str, argv: list[str]) -> None:
    """A station whose keys live in a PKCS#11 token does TLS through OpenSSL's pkcs11-provider, which OpenSSL loads
    from the configuration OPENSSL_CONF names when ssl is first imported - and asyncio has imported it already. So
    the command writes that configuration and executes itself again with OPENSSL_CONF set (once: then it is set)."""
    from .security import p11provider
    try:
        prepared = p11provider.prepare_for_config(config)
        if prepared is None:
            return
        conf, module = prepared
        if os.environ.get("OPENSSL_CONF") != str(conf):
            os.environ["OPENSSL_CONF"] = str(conf)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, "-m", "secure_cp", *argv])
        p11provider.activate(conf, module)
    except (p11provider.ProviderError, OSError) as exc:
        print(f"secure-cp: PKCS#11 TLS set-up: {exc}", file=sys.stderr)   # the connection attempts say it again


if __name__ == "__main__":
    sys.exit(main())
