"""The `secure-cp` command and its configuration: bad configs exit non-zero naming the key; SIGTERM is clean."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from secure_cp.config import ConfigError, load, parse
from helpers import eventually

GOOD = """
[station]
identity = "CP-7"
data_dir = "data"
[csms]
url = "ws://127.0.0.1:1"
protocols = ["ocpp1.6"]
[[evse]]
connectors = 2
[ocpp]
HeartbeatInterval = 60
StopTransactionOnEVSideDisconnect = true
"""


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "secure_cp.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_good_config_parses(tmp_path):
    p = tmp_path / "st.toml"
    p.write_text(GOOD)
    cfg = load(p)
    assert cfg.identity == "CP-7" and cfg.connectors == 2
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.ocpp_config == {"HeartbeatInterval": "60", "StopTransactionOnEVSideDisconnect": "true"}
    assert cfg.storage_low_mb == 32.0      # the default: MemoryExhaustion below 32 MB free
    assert parse({"station": {"identity": "X", "storage_low_mb": 0}}).storage_low_mb == 0.0   # off


@pytest.mark.parametrize("patch, key", [
    ({"station": {}}, "station.identity"),
    ({"station": {"identity": "X", "colour": "red"}}, "station.colour"),
    ({"station": {"identity": "X"}, "csms": {"url": "http://x"}}, "csms.url"),
    ({"station": {"identity": "X"}, "csms": {"protocols": ["ocpp9"]}}, "csms.protocols"),
    ({"station": {"identity": "X"}, "csms": {"security_profile": 1}}, "csms.password"),
    ({"station": {"identity": "X"}, "csms": {"security_profile": True}}, "csms.security_profile"),
    ({"station": {"identity": "X"}, "evse": [{"connectors": 0}]}, "evse[0].connectors"),
    ({"station": {"identity": "X"}, "hardware": {"adapter": "nonsense"}}, "hardware.adapter"),
    ({"station": {"identity": "X"}, "simulator": {"api": "nohost"}}, "simulator.api"),
    ({"station": {"identity": "X"}, "bogus": {}}, "[bogus]"),
    ({"station": {"identity": "X", "storage_low_mb": -1}}, "station.storage_low_mb"),
    ({"station": {"identity": "X", "storage_low_mb": "32"}}, "station.storage_low_mb"),
])
def test_bad_config_names_the_key(patch, key):
    with pytest.raises(ConfigError) as e:
        parse(patch)
    assert key in str(e.value)


def test_cli_bad_config_exits_nonzero_with_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[station]\nidentity = "X"\n[csms]\nurl = "ftp://nope"\n')
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    assert "csms.url" in r.stderr
    r = run_cli("run", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "broken.toml").write_text("[station\n")
    r = run_cli("run", "--config", str(tmp_path / "broken.toml"))
    assert r.returncode == 2 and "not valid TOML" in r.stderr


def test_cli_unknown_ocpp_key_is_a_config_error(tmp_path):
    p = tmp_path / "st.toml"
    p.write_text(GOOD.replace("HeartbeatInterval = 60", "NoSuchKey = 1"))
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    assert "NoSuchKey" in r.stderr and "Traceback" not in r.stderr


async def test_service_sigterm_is_clean_and_json_logs(tmp_path, csms):
    p = tmp_path / "st.toml"
    p.write_text(GOOD.replace("ws://127.0.0.1:1", csms.url))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "secure_cp.cli", "run", "--config", str(p),
                                                "--json-logs", stderr=asyncio.subprocess.PIPE)
    try:
        await csms.wait_for("BootNotification", timeout=20)
        await csms.wait_for("StatusNotification", lambda q: q["connectorId"] == 2, timeout=10)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
    err = (await proc.stderr.read()).decode()
    assert rc == 0, err
    import json
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
    assert not any("Traceback" in x.get("exc", "") for x in lines)


def test_outbox_cli_on_empty_store(tmp_path):
    from secure_cp.store import Database
    Database(tmp_path / "station.db").close()
    r = run_cli("outbox", "--data-dir", str(tmp_path))
    assert r.returncode == 0 and "0 pending, 0 given up" in r.stderr


def test_sd_notify_datagram(tmp_path, monkeypatch):
    import socket
    from secure_cp import systemd
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert systemd.notify("READY=1")
        assert srv.recv(64) == b"READY=1"
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not systemd.notify("READY=1")
    finally:
        srv.close()


async def test_outbox_cli_reads_while_the_station_runs(csms, make_station):
    """The store lock keeps writers out, but listing the outbox works while the station is running."""
    st = await make_station(csms)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)   # registration accepted
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    await csms.stop()                                  # CSMS gone: the StopTransaction stays queued
    st.hw.present_tag("TAG1")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "secure_cp.cli", "outbox", "--data-dir",
                                                str(st.cfg.data_dir), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["action"] for r in rows] == ["StopTransaction"] and rows[0]["status"] == "pending"
    assert "1 pending, 0 given up" in err.decode()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "secure_cp.cli", "outbox", "--data-dir",
                                                str(st.cfg.data_dir), "--retry", "all",
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 3 and "lock" in err.decode().lower()


async def test_internal_error_in_an_event_reloads_state_and_keeps_running(csms, make_station, monkeypatch):
    """A bug while handling an event rolls its writes back; the station reloads from the store (like a watchdog
    reset, no process exit) and keeps serving."""
    st = await make_station(csms)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    engine = st.station.engine

    def broken(*a, **k):
        raise RuntimeError("simulated bug")
    monkeypatch.setattr(engine, "on_hal", broken)
    n = len(csms.received)
    st.hw.ev_plug(1)                                   # the event fails inside the engine
    await csms.wait_for("BootNotification", after=n)   # reloaded: a fresh boot from the store
    # the reloaded engine read the inputs as they are: the car is plugged in (Preparing)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Preparing",
                        after=n)
    assert st.station.engine is not engine
    st.hw.present_tag("TAG1")                           # the new engine serves
    await csms.wait_for("StartTransaction", after=n)


async def test_inputs_before_boot_never_reach_the_unbooted_engine(csms, make_station, monkeypatch):
    """The store refuses the first boot (StoreError: _run_once retries after boot_retry_s). Meanwhile the car is
    plugged in and an idTag presented: nothing reaches the un-booted engine (a transaction started there would be
    ended as a power-cut leftover by the boot); the boot reads the plug through current_inputs, the
    stale swipe starts nothing, and an emergency stop pressed meanwhile is applied after the boot."""
    from secure_cp.runtime import Station
    from secure_cp.store.db import StoreError
    monkeypatch.setattr(Station, "boot_retry_s", 1.0)
    st = await make_station(csms, start=False)
    real, boots = Station._boot, []

    def boot(self, now):
        boots.append(now)
        if len(boots) == 1:
            raise StoreError("disk I/O error (simulated)")
        return real(self, now)
    monkeypatch.setattr(Station, "_boot", boot)
    await st.start()
    await eventually(lambda: len(boots) == 1, what="first boot attempt")
    assert not st.station.engine.booted
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1", 1)
    st.hw.emergency_stop(True)
    assert st.station.engine.transactions.open() == [] and st.station.engine.drain() == []
    await csms.wait_for("BootNotification")
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    assert st.station.engine.connectors[1].plugged          # read at boot (current_inputs)
    await eventually(lambda: st.station.engine.emergency, what="emergency stop applied after the boot")
    assert len(boots) == 2
    assert st.station.engine.transactions.recent(10) == []
    assert not any(r.action in ("Authorize", "StartTransaction") for r in csms.received)
