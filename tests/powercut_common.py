"""The power-cut harness shared by the OCPP 1.6 and 2.0.1 power-cut tests (tests/test_powercut.py,
tests/test_powercut_v201.py).

The station runs as ``python -m secure_cp.cli run --config station.toml`` with the simulator REST API, which is the
only way the tests drive it (plug, idTag, unplug). A :class:`KillPlan` per cycle says where the SIGKILL lands (a
phase of the session and its n-th occurrence, plus a delay); :func:`run_power_cuts` runs the cycles and
:func:`restart_and_settle` brings the station up one last time and waits until it delivered everything it had
queued, then stops it cleanly. What is checked afterwards (the CSMS ledger) is protocol-specific and stays in the
test modules.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from secure_cp.sim.csms import Csms

REPO = Path(__file__).resolve().parent.parent
IDENTITY = "CP-POWERCUT"
TAG = "TAG1"
# where a kill is armed; "boot" fires from the spawn (recovery itself gets cut), "random" from the API being up
PHASES = ("boot", "plug", "tag", "charging", "stop_tag", "unplug", "random")
HTTP_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


def write_station_config(path: Path, data_dir: Path, csms_url: str, api_port: int, *, serial: str,
                         protocol: str) -> None:
    """The station.toml of a power-cut run: IDENTITY speaking ``protocol`` to the CSMS, a MeterValues sample every
    second, the energy register in the stop data, the simulator REST API on ``api_port``."""
    path.write_text(f"""
[station]
identity = "{IDENTITY}"
serial = "{serial}"
firmware_version = "0.1"
data_dir = "{data_dir}"

[csms]
url = "{csms_url}"
protocols = ["{protocol}"]
reconnect_min = 0.05
reconnect_max = 0.5
call_timeout = 2

[simulator]
api = "127.0.0.1:{api_port}"

[ocpp]
MeterValueSampleInterval = "1"
StopTxnSampledData = "Energy.Active.Import.Register"
HeartbeatInterval = "300"
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StationProcess:
    """``secure-cp run`` as a child process, its output appended to one log file."""

    def __init__(self, config: Path, log: Path, api_port: int):
        self.config, self.log = config, log
        self.base = f"http://127.0.0.1:{api_port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def spawn(self) -> None:
        self.starts += 1
        with self.log.open("a") as out:
            out.write(f"\n===== start #{self.starts} =====\n")
            out.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "secure_cp.cli", "run", "--config", str(self.config)],
                                         cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def wait_api(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"station exited with {self.proc.returncode} while starting:\n{self.tail()}")
            with contextlib.suppress(*HTTP_ERRORS):
                async with http.get(self.base + "/api/websocket") as resp:
                    if resp.status == 200:
                        return
            if loop.time() > end:
                raise AssertionError(f"the simulator API did not come up within {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        """The power cut. Safe to call more than once, and on a process that already exited (then it is a bug)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    async def wait_exit(self, timeout: float = 15.0, what: str = "exit") -> int:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.proc.poll() is None:
            if loop.time() > end:
                self.kill()
                raise AssertionError(f"{what} not reached within {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.01)
        return self.proc.returncode


@dataclass
class KillPlan:
    """One cycle: where the kill is armed (phase, its n-th occurrence), how long after, and the session timing."""
    phase: str
    nth: int
    delay: float
    charge_s: float
    gaps: tuple[float, float, float]
    wait_registered: bool
    session_seed: int
    counts: collections.Counter = field(default_factory=collections.Counter)
    armed: bool = False

    @classmethod
    def draw(cls, rng: random.Random, phase: str) -> "KillPlan":
        charge_s = rng.uniform(0.4, 2.0)
        if phase == "boot":
            delay = rng.uniform(0.0, 0.9)                # import, store open, recovery, connect
        elif phase == "random":
            delay = rng.uniform(0.0, 3.5)
        elif phase == "charging":
            delay = rng.uniform(0.05, charge_s)          # MeterValues sampled and queued meanwhile
        else:                                            # "right after": at once, within a CALL, or a bit later
            delay = rng.choice((0.0, rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.6)))
        return cls(phase=phase, nth=1 if rng.random() < 0.75 else 2, delay=delay, charge_s=charge_s,
                   gaps=(rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3)),
                   wait_registered=rng.random() < 0.3, session_seed=rng.getrandbits(32))

    def reached(self, phase: str, station: StationProcess) -> None:
        self.counts[phase] += 1
        if not self.armed and phase == self.phase and self.counts[phase] == self.nth:
            self.arm(station)

    def arm(self, station: StationProcess) -> None:
        self.armed = True
        asyncio.get_running_loop().call_later(self.delay, station.kill)


class Driver:
    """A driver and an EV, through the REST API only: plug, tag, charge, tag again (mostly), unplug; again and
    again until the power goes."""

    def __init__(self, http: aiohttp.ClientSession, station: StationProcess):
        self.http, self.st = http, station

    async def _call(self, method: str, path: str, body: dict | None = None):
        async with self.http.request(method, self.st.base + path, json=body) as resp:
            data = await resp.json()
            assert resp.status == 200, f"{method} {path} {body} -> {resp.status} {data}"
            return data

    async def run(self, plan: KillPlan) -> None:
        rng = random.Random(plan.session_seed)
        gap_plug, gap_stop, gap_unplug = plan.gaps
        while True:
            await self._call("POST", "/api/connector/1/evse", {"evPlugged": True})
            plan.reached("plug", self.st)
            await asyncio.sleep(gap_plug * rng.random())
            await self._call("POST", "/api/connector/1/transaction", {"idTag": TAG})
            plan.reached("tag", self.st)
            if await self._started():
                plan.reached("charging", self.st)
                await asyncio.sleep(plan.charge_s)
                if rng.random() < 0.8:     # else the driver just pulls the cable: EVDisconnected
                    await self._call("POST", "/api/connector/1/transaction", {"idTag": TAG})
                    plan.reached("stop_tag", self.st)
                    await asyncio.sleep(gap_stop)
            await self._call("POST", "/api/connector/1/evse", {"evPlugged": False})
            plan.reached("unplug", self.st)
            await asyncio.sleep(gap_unplug)

    async def _started(self, timeout: float = 3.0) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            if await self._call("GET", "/api/connector/1/transaction") is not None:
                return True
            await asyncio.sleep(0.02)
        return False   # not authorized in time (e.g. the answer comes late): the unplug ends whatever starts


def read_store(db_path: Path) -> tuple[int, int]:
    """(pending outbox items, open transactions), read-only beside the running station (WAL allows it). A
    transaction that still waits for a signed reading (its end message is held until the record arrives: issue #5)
    counts as open: its message is not in the outbox yet."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
        open_tx = conn.execute("SELECT COUNT(*) FROM transactions WHERE stopped_at IS NULL "
                               "OR COALESCE(json_array_length(extra, '$.sig_wait'), 0) > 0").fetchone()[0]
        return pending, open_tx
    finally:
        conn.close()


async def settle(csms: Csms, station: StationProcess, db_path: Path, boot_index: int, timeout: float = 60.0) -> None:
    """Wait until the restarted station has registered (its recovery ran before it connected) and delivered
    everything it had queued."""
    await csms.wait_for("BootNotification", identity=IDENTITY, after=boot_index, timeout=timeout)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        pending, open_tx = read_store(db_path)
        if pending == 0 and open_tx == 0:
            return
        if loop.time() > end:
            raise AssertionError(f"not settled: {pending} outbox items pending, {open_tx} transactions open\n"
                                 f"{station.tail()}")
        await asyncio.sleep(0.1)


async def run_power_cuts(csms: Csms, station: StationProcess, http: aiohttp.ClientSession, rng: random.Random,
                         phases: list[str], where: str, registered: Callable[[dict], bool],
                         have_transaction: Callable[[], bool]) -> None:
    """One spawn + session + SIGKILL per entry of ``phases``. ``registered`` matches the StatusNotification payload
    that shows the station is registered (its authorization of TAG1 needs the CSMS until ``have_transaction()``
    says a transaction has started once: afterwards TAG1 is in the authorization cache and may start offline)."""
    driver = Driver(http, station)
    for phase in phases:
        plan = KillPlan.draw(rng, phase)
        boot_index = len(csms.received)
        station.spawn()
        if phase == "boot":            # cut while importing, opening the store, recovering, connecting
            plan.arm(station)
            code = await station.wait_exit()
            assert code == -signal.SIGKILL, f"{where}: station died by itself ({code}):\n{station.tail()}"
            continue
        await station.wait_api(http)
        if plan.wait_registered or not have_transaction():
            with contextlib.suppress(TimeoutError):
                await csms.wait_for("StatusNotification", registered, identity=IDENTITY, after=boot_index,
                                    timeout=10)
        if phase == "random":
            plan.arm(station)
        session = asyncio.create_task(driver.run(plan))
        exit_wait = asyncio.create_task(station.wait_exit(timeout=30, what=f"kill point {plan}"))
        done, _ = await asyncio.wait({session, exit_wait}, return_when=asyncio.FIRST_COMPLETED)
        if exit_wait not in done:
            # the driver stopped before the kill point: its error, unless the station just died
            if not isinstance(session.exception(), HTTP_ERRORS):
                session.result()
            station.kill()
            await exit_wait
        code = exit_wait.result()
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError, *HTTP_ERRORS):
            await session
        assert code == -signal.SIGKILL, f"{where}: station died by itself ({code}):\n{station.tail()}"


async def restart_and_settle(csms: Csms, station: StationProcess, http: aiohttp.ClientSession, db_path: Path,
                             where: str) -> None:
    """The last start: recovery, delivery of everything queued, then a clean SIGTERM shutdown (exit code 0)."""
    boot_index = len(csms.received)
    station.spawn()
    await station.wait_api(http)
    await settle(csms, station, db_path, boot_index)
    station.proc.send_signal(signal.SIGTERM)
    assert await station.wait_exit() == 0, f"{where}: unclean exit:\n{station.tail()}"


async def stop_if_running(station: StationProcess) -> None:
    if station.proc is not None and station.proc.poll() is None:
        station.kill()
        await station.wait_exit()


@dataclass
class PowerCutRun:
    """A finished power-cut run: the CSMS (still serving, for its ledger) and the station's own records."""
    csms: Csms
    station: StationProcess
    records: list            # the station's TxRecords, read from its store after the clean final stop
    given_up: list
    pending: int
    where: str               # "seed=N": goes into every assertion message so a failure can be replayed
    kills: int
    legal: list = field(default_factory=list)   # the legal log's LegalRecords (Eichrecht, issue #5), in log order
    meter_pages: dict = field(default_factory=dict)   # the simulated meter's persisted PG counters: cid -> {T, F}
    gateway_next: dict = field(default_factory=dict)  # gateway mode: the station's Pagination counters: {T, F}


@contextlib.asynccontextmanager
async def power_cut_run(tmp_path: Path, capsys, *, label: str, default_kills: int,
                        write_config: Callable[[Path, Path, str, int], None],
                        registered: Callable[[dict], bool], have_transaction: Callable[[Csms], bool]):
    """Seed (printed in every run), CSMS, station process, the kill loop, the final settle and clean stop; yields a
    :class:`PowerCutRun` while the CSMS is still up so the caller checks its ledger."""
    from secure_cp.eichrecht.legallog import LegalLog
    from secure_cp.eichrecht.pagination import Pagination
    from secure_cp.store import Database, Outbox, Transactions
    seed = int(os.environ.get("SECURE_CP_POWERCUT_SEED") or random.SystemRandom().randrange(2**32))
    kills = int(os.environ.get("SECURE_CP_POWERCUT_KILLS") or default_kills)
    with capsys.disabled():   # the seed is printed in every run, passing or not
        print(f"\npower-cut test{label}: seed={seed} kills={kills} (replay with SECURE_CP_POWERCUT_SEED={seed})")
    rng = random.Random(seed)
    phases = [PHASES[i % len(PHASES)] for i in range(kills)]
    rng.shuffle(phases)
    where = f"seed={seed}"
    data_dir = tmp_path / "data"
    db_path = data_dir / "station.db"
    api_port = free_port()
    async with Csms("127.0.0.1", 0) as csms, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        config = tmp_path / "station.toml"
        write_config(config, data_dir, csms.url, api_port)
        station = StationProcess(config, tmp_path / "station.log", api_port)
        try:
            await run_power_cuts(csms, station, http, rng, phases, where, registered=registered,
                                 have_transaction=lambda: have_transaction(csms))
            await restart_and_settle(csms, station, http, db_path, where)
        finally:
            await stop_if_running(station)
        db = Database(db_path)
        try:
            records = Transactions(db).recent(1000)
            outbox = Outbox(db)
            given_up, pending = outbox.failed(), outbox.pending_count()
            legal = LegalLog(db).between(0, float("inf"))
            gateway_next = {ctx: Pagination(db).peek(ctx) for ctx in ("T", "F")}
        finally:
            db.close()
        meter_state = data_dir / "sim-meter.json"
        meter_pages = {int(cid): pages for cid, pages in
                       (json.loads(meter_state.read_text()).get("pagination", {}) if meter_state.exists() else {}).items()}
        yield PowerCutRun(csms, station, records, given_up, pending, where, kills, legal=legal,
                          meter_pages=meter_pages, gateway_next=gateway_next)


def check_station_record(run: PowerCutRun) -> None:
    """The station's own record after the final clean stop: a transaction was started at all, nothing was given up
    and nothing is left undelivered in the outbox."""
    where = run.where
    assert run.records, f"{where}: no transaction was ever started:\n{run.station.tail()}"
    assert run.given_up == [], f"{where}: outbox items given up: {run.given_up}"
    assert run.pending == 0, f"{where}: {run.pending} outbox items never delivered"


# the signed-reading errors a power cut explains (engine.station.Engine.boot): the begin record was asked for but had
# not reached the legal log when the power went (the register has moved on since: a new begin record would be wrong)
KILL_EXPLAINED = {"Transaction.Begin": {"no signed begin reading before the restart"}}


@dataclass
class SignedSummary:
    """What :func:`check_signed_records` found, for the run's report line."""
    records: int = 0
    at_csms: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)
    pages: dict = field(default_factory=dict)      # (meter_key_id, PG context) -> last number

    def __str__(self) -> str:
        return (f"{self.records} legal-log records, {self.at_csms} signed values at the CSMS (all verified, "
                f"byte-identical), pagination {self.pages}, signed-reading errors {dict(self.errors) or 'none'}")


def check_signed_records(run: PowerCutRun, end_message: Callable[[object], dict], *, gateway: bool = False
                         ) -> SignedSummary:
    """Issue #5 "Never lost" under power cuts, from the station's legal log and the CSMS's ledger:

    * every transaction has its signed begin and end record in the legal log, each on its transaction record byte
      for byte, or an error on the record (``extra["signed_errors"]``) that the power cut explains (KILL_EXPLAINED);
    * the PG numbers per meter (key) and PG context are 1, 2, 3, ... in log order across all restarts (no repeat,
      no gap), and the counters that number the next record (the simulated meter's persisted ones; in gateway mode
      the station's Pagination table) stand right after the last logged record: no number was handed out and lost;
    * every signed value that reached the CSMS verifies and is byte-identical to a legal-log record;
    * the end message of each transaction (``end_message(tx)``: the StopTransaction / TransactionEvent Ended
      payload) carries the legal log's signed end record when there is one."""
    from secure_cp.eichrecht.ocmf import OcmfRecord
    from secure_cp.eichrecht.verify import verify_signature
    from secure_cp.sim.csms import _signed_in
    where, out = run.where, SignedSummary(records=len(run.legal))
    by_tx: dict[str, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for rec in run.legal:
        by_tx[rec.tx_key][rec.context].append(rec)
    known = {tx.tx_key for tx in run.records}
    assert set(by_tx) <= known, f"{where}: legal-log records of unknown transactions {sorted(set(by_tx) - known)}"
    for tx in run.records:
        what = f"{where}: transaction {tx.tx_key} ({tx.transaction_id})"
        assert not tx.extra.get("sig_wait"), f"{what}: still waiting for {tx.extra['sig_wait']}"
        errors = tx.extra.get("signed_errors", {})
        signed = tx.extra.get("signed", {})
        for context in ("Transaction.Begin", "Transaction.End"):
            logged = by_tx[tx.tx_key].get(context, [])
            assert len(logged) <= 1, f"{what}: {len(logged)} {context} records in the legal log"
            if context in errors:
                out.errors[f"{context}: {errors[context]}"] += 1
                assert errors[context] in KILL_EXPLAINED.get(context, ()), f"{what}: {context}: {errors[context]}"
                assert not logged, f"{what}: {context} logged, yet recorded as an error ({errors[context]})"
                continue
            assert logged, f"{what}: no signed {context} record in the legal log and no error recorded"
            assert signed.get(context, {}).get("raw") == logged[0].raw, f"{what}: {context} record differs"
        end_logged = by_tx[tx.tx_key].get("Transaction.End")
        ends = [text for ctx, text, _, _ in _signed_in(end_message(tx)) if ctx == "Transaction.End"]
        if end_logged:
            assert ends == [end_logged[0].raw], f"{what}: end message carries {ends}, legal log {end_logged[0].raw}"
        else:
            assert ends == [], f"{what}: end message carries a signed end value the legal log lacks"

    # pagination per meter key and context, in log order: 1, 2, 3, ... across every restart
    numbers: dict[tuple, list[int]] = collections.defaultdict(list)
    for rec in run.legal:
        assert rec.pagination, f"{where}: record {rec.id} has no PG"
        numbers[(rec.meter_key_id, rec.pagination[0])].append(int(rec.pagination[1:]))
    for (key_id, ctx), seq in numbers.items():
        assert seq == list(range(1, len(seq) + 1)), f"{where}: PG of meter key {key_id} context {ctx}: {seq}"
        out.pages[f"{key_id}:{ctx}"] = seq[-1]
    if gateway:
        assert len({k for k, _ in numbers}) <= 1, f"{where}: gateway records under several keys {list(numbers)}"
        for ctx, nxt in run.gateway_next.items():
            logged = sum(len(seq) for (_, c), seq in numbers.items() if c == ctx)
            assert nxt == logged + 1, f"{where}: gateway Pagination {ctx} next {nxt}, the legal log has {logged}"
    else:
        used: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        for rec in run.legal:
            used[rec.connector_id][rec.pagination[0]] += 1
        for cid, pages in run.meter_pages.items():
            for ctx, nxt in pages.items():
                assert nxt == used[cid][ctx] + 1, \
                    f"{where}: meter {cid} hands out {ctx}{nxt} next, the legal log has {used[cid][ctx]} {ctx} records"

    # every signed value at the CSMS: verified, and byte for byte a legal-log record
    raws = {rec.raw: rec for rec in run.legal}
    for value in run.csms.signed_values:
        assert value.error is None and value.ocmf in raws, f"{where}: CSMS got a record the legal log lacks: {value}"
        rec = raws[value.ocmf]
        ok = value.verified if value.verified is not None else \
            verify_signature(OcmfRecord.parse(value.ocmf), value.public_key or rec.public_key)
        assert ok is True, f"{where}: signature of {value.ocmf} does not verify"
        out.at_csms += 1
    return out
