"""``python -m bench.security``: the security part of the benchmark (issue #4 "Performance"). Not in the default
``python -m bench`` run (about 15 s; ``--quick`` about 5 s).

1. **ECDSA P-256 signatures per second per key backend**: software (PEM file), SoftHSM2 (a token made by
   ``hsm/softhsm2-setup.sh`` in a temporary directory), and a TPM through tpm2-pkcs11 when ``--tpm-config
   STATION.toml`` names a ``[keys]`` section for it (e.g. the swtpm made by ``hsm/swtpm-setup.sh``, with its
   environment exported); otherwise that row is skipped with the reason. The same swtpm (through tpm2-abrmd) is
   measured again with the ``tpm2`` backend (tpm2-pytss: TPM2_Load + TPM2_Sign + TPM2_FlushContext per signature).
   Each signature goes through ``KeyBackend.sign_digest`` (SHA-256 digest hashed in software, signed by the
   backend), as the station signs.
2. **TLS handshake time, security profiles 2 and 3**: ``websockets.connect`` to a local ``websockets.serve`` with
   the station's ``security.tls.client_context`` and ``server_context`` contexts (full handshake each time: TCP,
   TLS 1.3, WebSocket upgrade), on a development PKI made with ``security.devpki``. Profile 3 once per key backend
   that can serve TLS: software key, and the key in SoftHSM2 / in swtpm (tpm2-pkcs11), used by OpenSSL through
   pkcs11-provider. OpenSSL reads the provider configuration when ``ssl`` is first imported, so each token row runs
   in a child process (``--tls-worker``) started with ``OPENSSL_CONF``. The tpm2-pytss backend has no TLS row: it
   cannot serve TLS (hsm/README.md).
3. **Event-loop stall check** (DESIGN.md rule 7): a station runs against the embedded CSMS while a key backend
   that takes 100 ms per signature (a software key behind a sleep, standing for a slow TPM) makes 10 signatures
   through the station's off-loop signing path (``security.keys.wrapper.sign_data``: ``asyncio.to_thread``). A
   1 ms ticker measures how late the loop runs it; the maximum lateness must stay <= 10 ms. The same window
   without signing is the baseline, and signing *on* the loop is shown for contrast (it stalls >= 100 ms).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import AsyncIterator, Awaitable, Callable, Iterator

from cryptography.hazmat.primitives import hashes

from secure_cp.security import devpki
from secure_cp.security.keys.base import KeyAlgorithm, KeyBackend, KeyInfo, KeyRef
from secure_cp.security.keys.config import KeysConfig, open_backend
from secure_cp.security.keys.software import SoftwareBackend
from secure_cp.security.keys.wrapper import sign_data

from .common import ROOT

STALL_LIMIT_MS = 10.0
SLOW_SIGNATURE_S = 0.100
SIGNATURES = 10


class SlowBackend(KeyBackend):
    """A backend that takes ``delay`` seconds per signature (slow hardware: a TPM needs up to ~100 ms) and records
    the thread of every signature (``sign_threads``). Everything else is delegated to ``inner``."""

    def __init__(self, inner: KeyBackend, delay: float = SLOW_SIGNATURE_S) -> None:
        self.inner = inner
        self.delay = delay
        self.kind = inner.kind
        self.sign_threads: list[int] = []

    def sign_digest(self, label: str, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        self.sign_threads.append(threading.get_ident())
        time.sleep(self.delay)
        return self.inner.sign_digest(label, digest, algorithm)

    def generate(self, label: str, algorithm: KeyAlgorithm) -> KeyInfo:
        return self.inner.generate(label, algorithm)

    def public_key_der(self, label: str) -> bytes:
        return self.inner.public_key_der(label)

    def delete(self, label: str) -> None:
        self.inner.delete(label)

    def list_keys(self) -> list[KeyInfo]:
        return self.inner.list_keys()

    def key_ref(self, label: str) -> KeyRef:
        return self.inner.key_ref(label)


def _say(text: str) -> None:
    print(text, flush=True)


# ---- 1. signatures per second -----------------------------------------------------------------------------------
def signatures_per_second(backend: KeyBackend, seconds: float) -> float:
    """Sequential ECDSA P-256 signatures over SHA-256 digests for about ``seconds`` (at least 20)."""
    label = "bench-p256"
    if label in {k.label for k in backend.list_keys()}:
        backend.delete(label)
    backend.generate(label, KeyAlgorithm.EC_P256)
    try:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(b"secure-cp benchmark")
        value = digest.finalize()
        n, start = 0, time.perf_counter()
        while n < 20 or time.perf_counter() - start < seconds:
            backend.sign_digest(label, value, hashes.SHA256())
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        backend.delete(label)


def softhsm_config(directory: Path) -> KeysConfig:
    """A fresh SoftHSM2 token made by hsm/softhsm2-setup.sh; SOFTHSM2_CONF is set for this process."""
    from secure_cp.security.keys.pkcs11_backend import default_module
    done = subprocess.run(["bash", str(ROOT / "hsm" / "softhsm2-setup.sh"), str(directory), "secure-cp-bench"],
                          capture_output=True, text=True, timeout=60)
    module = default_module()
    if done.returncode != 0 or module is None:
        raise RuntimeError(f"SoftHSM2 setup failed: {done.stderr.strip() or 'no libsofthsm2.so'}")
    os.environ["SOFTHSM2_CONF"] = str(directory / "softhsm2.conf")
    return KeysConfig(backend="pkcs11", module=Path(module), token="secure-cp-bench", pin_file=directory / "token.pin")


SWTPM_SETUP = ROOT / "hsm" / "swtpm-setup.sh"


def swtpm_config(directory: Path) -> KeysConfig:
    """A swtpm + tpm2-abrmd + tpm2-pkcs11 token made by hsm/swtpm-setup.sh; its environment (TCTI, store, D-Bus)
    is exported into this process. Stop the daemons with :func:`swtpm_stop`."""
    done = subprocess.run(["bash", str(SWTPM_SETUP), str(directory), "secure-cp-bench"], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"hsm/swtpm-setup.sh failed: {done.stderr.strip()[-300:]}")
    settings: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            os.environ.update(item.split("=", 1) for item in shlex.split(line[len("export "):]))
        elif " = " in line:
            key, value = line.split(" = ", 1)
            settings[key.strip()] = value.strip().strip('"')
    if not settings.get("module"):
        raise RuntimeError("hsm/swtpm-setup.sh found no libtpm2_pkcs11.so")
    return KeysConfig(backend="pkcs11", module=Path(settings["module"]), token=settings["token"],
                      pin_file=Path(settings["pin_file"]))


def swtpm_stop(directory: Path) -> None:
    subprocess.run(["bash", str(SWTPM_SETUP), str(directory), "--stop"], capture_output=True, timeout=30)


def tpm_config(path: Path | None) -> tuple[KeysConfig | None, str]:
    """The [keys] section of ``--tpm-config`` (None and why not, when there is none)."""
    if path is None:
        return None, "no --tpm-config and no hsm/swtpm-setup.sh"
    from secure_cp.config import ConfigError, load
    try:
        return load(path).keys, ""
    except (ConfigError, OSError) as exc:
        return None, f"--tpm-config {path}: {exc}"


#: (row name, [keys] configuration or None, note: why it is missing, or how it is reached)
Token = tuple[str, KeysConfig | None, str]


@contextmanager
def token_backends(tmp: Path, tpm: Path | None) -> Iterator[list[Token]]:
    """The token backends of this run, set up once for both measurements: SoftHSM2, the TPM through tpm2-pkcs11 and
    the TPM through tpm2-pytss (``tpm2`` backend, the same TPM: swtpm via tpm2-abrmd, or ``/dev/tpmrm0`` with
    ``--tpm-config``). The swtpm daemons are stopped at the end."""
    tokens: list[Token] = []
    try:
        tokens.append(("SoftHSM2 (PKCS#11)", softhsm_config(tmp / "softhsm"), ""))
    except Exception as exc:      # a benchmark row, not the station: report and go on
        tokens.append(("SoftHSM2 (PKCS#11)", None, f"skipped: {exc}"))
    auto = tpm is None and SWTPM_SETUP.exists()
    where = "swtpm" if tpm is None else "TPM"
    try:
        cfg, why = (swtpm_config(tmp / "swtpm"), "") if auto else tpm_config(tpm)
    except Exception as exc:
        cfg, why = None, str(exc)
    if cfg is None:
        tokens.append((f"{where} (tpm2-pkcs11)", None, f"skipped: {why}"))
    else:
        tokens.append((f"{where} (tpm2-pkcs11)", cfg, "via tpm2-abrmd" if auto else ""))
    pytss = None
    if cfg is not None or (tpm is not None and Path("/dev/tpmrm0").exists()):
        pytss = KeysConfig(backend="tpm2", dir=tmp / "tpm2-keys",
                           tcti="tabrmd:bus_type=session" if auto else "device:/dev/tpmrm0")
    tokens.append((f"{where} (tpm2-pytss)", pytss, ("via tpm2-abrmd" if auto else "")
                   if pytss else "skipped: no TPM (hsm/swtpm-setup.sh failed or missing)"))
    try:
        yield tokens
    finally:
        if auto:
            swtpm_stop(tmp / "swtpm")


def signature_rows(tmp: Path, seconds: float, tokens: list[Token]) -> list[tuple[str, float | None, str]]:
    """(backend, signatures/s or None, note) per backend."""
    rows: list[tuple[str, float | None, str]] = []
    rows.append(("software", signatures_per_second(SoftwareBackend(tmp / "softkeys"), seconds), "development only"))
    for name, cfg, note in tokens:
        if cfg is None:
            rows.append((name, None, note))
            continue
        try:
            with open_backend(cfg) as backend:
                rows.append((name, signatures_per_second(backend, seconds), note))
        except Exception as exc:
            rows.append((name, None, f"skipped: {exc}"))
    return rows


# ---- 2. TLS handshakes ------------------------------------------------------------------------------------------
async def handshake_times(pki: devpki.DevPki | SimpleNamespace, profile: int, n: int,
                          credential=None) -> list[float]:
    """Seconds per full connection (TCP + TLS + WebSocket upgrade) under ``profile`` 2 or 3; profile 3 with
    ``credential`` (default: the software station key of ``pki``)."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from secure_cp.security.tls import SoftwareCredential, client_context, server_context
    server_ctx = server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_file,
                                require_client_cert=profile == 3)
    if profile == 3 and credential is None:
        credential = SoftwareCredential(pki.station_chain, pki.station_key)
    client_ctx = client_context(profile, pki.ca_file, credential if profile == 3 else None)

    async def handler(ws) -> None:
        await ws.wait_closed()

    times = []
    async with serve(handler, "127.0.0.1", 0, ssl=server_ctx) as server:
        port = server.sockets[0].getsockname()[1]
        for _ in range(n):
            start = time.perf_counter()
            async with connect(f"wss://localhost:{port}/CP1", ssl=client_ctx):
                times.append(time.perf_counter() - start)
    return times


TLS_LABEL = "bench-tls"


def token_handshake_times(tmp: Path, pki: devpki.DevPki, cfg: KeysConfig, n: int) -> list[float]:
    """Profile 3 handshakes with the station key generated in the PKCS#11 token ``cfg``: the key and its certificate
    are made here (python-pkcs11), the handshakes run in a child process whose OpenSSL loads pkcs11-provider."""
    from secure_cp.security import p11provider
    assert cfg.module is not None and cfg.token is not None
    work = tmp / f"tls-{cfg.token}-{time.monotonic_ns()}"
    work.mkdir(parents=True)
    pin_file = cfg.pin_file
    if pin_file is None:          # an inline PIN: the provider reads a 0600 file
        pin_file = work / "token.pin"
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{cfg.pin}\n")
    with open_backend(cfg) as backend:
        if TLS_LABEL in {k.label for k in backend.list_keys()}:
            backend.delete(TLS_LABEL)
        backend.generate(TLS_LABEL, KeyAlgorithm.EC_P256)
        chain = devpki.station_certificate_for_key(work, "station", pki.cpo_ca, "BENCH-SEC",
                                                   backend.private_key(TLS_LABEL))
    conf = p11provider.write_openssl_conf(work, cfg.module, pin_file)
    spec = {"ca_file": str(pki.ca_file), "server_cert": str(pki.server_cert), "server_key": str(pki.server_key),
            "chain": str(chain), "label": TLS_LABEL, "token": cfg.token, "module": str(cfg.module),
            "key_dir": str(work / "uri"), "n": n}
    done = subprocess.run([sys.executable, "-m", "bench.security", "--tls-worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "OPENSSL_CONF": str(conf)})
    if done.returncode != 0:
        raise RuntimeError(f"TLS worker failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tls_worker(spec: dict) -> None:
    """Child of :func:`token_handshake_times` (OPENSSL_CONF set by the parent): prints the times as JSON."""
    from secure_cp.security.tls import Pkcs11Credential
    credential = Pkcs11Credential(Path(spec["chain"]), spec["label"], spec["token"], Path(spec["module"]),
                                  Path(spec["key_dir"]))
    pki = SimpleNamespace(ca_file=Path(spec["ca_file"]), server_cert=Path(spec["server_cert"]),
                          server_key=Path(spec["server_key"]))
    print(json.dumps(asyncio.run(handshake_times(pki, 3, spec["n"], credential))), flush=True)


def _timing(ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"median {statistics.median(ms):6.2f} ms   p95 {ms[max(0, int(len(ms) * 0.95) - 1)]:6.2f} ms"
            f"   min {ms[0]:6.2f} ms")


# ---- 3. event-loop stall --------------------------------------------------------------------------------------
class LagMeter:
    """A task that asks for a wake-up every ``period`` s and records how late each one comes (seconds)."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, loop.time() - due))

    @asynccontextmanager
    async def measuring(self) -> AsyncIterator[LagMeter]:
        self.lags = []
        self._task = asyncio.create_task(self._tick())
        try:
            yield self
            await asyncio.sleep(self.period * 5)    # a tick the work delayed is counted before the meter stops
        finally:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    @property
    def max_ms(self) -> float:
        return max(self.lags, default=0.0) * 1000


@asynccontextmanager
async def running_station(tmp: Path) -> AsyncIterator:
    """A station (OCPP 2.0.1, simulated hardware) booted against the embedded CSMS, heartbeat every second."""
    from secure_cp.config import StationConfig
    from secure_cp.hal.simulated import SimulatedHardware
    from secure_cp.runtime import Station
    from secure_cp.sim.csms import Csms
    async with Csms(subprotocols=("ocpp2.0.1",)) as csms:
        csms.boot_interval = 1
        cfg = StationConfig(identity="BENCH-SEC", data_dir=tmp / "station", csms_url=csms.url,
                            protocols=["ocpp2.0.1"], reconnect_min=0.2, reconnect_max=1.0)
        station = Station(cfg, SimulatedHardware(1))
        runner = asyncio.create_task(station.run())
        try:
            await csms.wait_for("BootNotification", timeout=10)
            await csms.wait_for("StatusNotification", timeout=10)
            yield csms
        finally:
            await station.stop()
            await asyncio.wait_for(runner, 10)


async def stall_check(tmp: Path, signatures: int = SIGNATURES, delay: float = SLOW_SIGNATURE_S) -> dict:
    """Max loop lateness (ms) with the station running: idle (baseline), while ``signatures`` slow signatures run
    through sign_data (off the loop), and while they run on the loop (contrast)."""
    backend = SlowBackend(SoftwareBackend(tmp / "slowkeys"), delay)
    backend.generate("slow", KeyAlgorithm.EC_P256)
    meter = LagMeter()
    loop_thread = threading.get_ident()
    window = signatures * delay

    async def off_loop() -> None:
        for i in range(signatures):
            await sign_data(backend, "slow", f"reading {i}".encode())

    async def on_loop() -> None:
        key = backend.private_key("slow")
        from cryptography.hazmat.primitives.asymmetric import ec
        for i in range(min(signatures, 3)):        # a few are enough to show the stall
            key.sign(f"reading {i}".encode(), ec.ECDSA(hashes.SHA256()))
            await asyncio.sleep(0)

    async def measure(work: Callable[[], Awaitable[None]] | None) -> tuple[float, int]:
        async with running_station(tmp / f"run-{time.monotonic_ns()}") as csms:
            before = len(csms.received)
            async with meter.measuring():
                if work is None:
                    await asyncio.sleep(window)
                else:
                    await work()
            return meter.max_ms, len(csms.received) - before

    baseline, _ = await measure(None)
    backend.sign_threads.clear()
    off, heartbeats = await measure(off_loop)
    off_threads = set(backend.sign_threads)
    on, _ = await measure(on_loop)
    return {"baseline_ms": baseline, "off_loop_ms": off, "on_loop_ms": on, "messages_during_signing": heartbeats,
            "worker_thread": loop_thread not in off_threads}


# ---- the run ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.security", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter measurements (about 5 s)")
    p.add_argument("--tpm-config", type=Path, help="station TOML whose [keys] section is a tpm2-pkcs11 token")
    p.add_argument("--tls-worker", metavar="JSON", help=argparse.SUPPRESS)    # internal: a token TLS row
    a = p.parse_args(argv)
    if a.tls_worker:
        tls_worker(json.loads(a.tls_worker))
        return 0
    seconds, handshakes = (0.3, 10) if a.quick else (1.5, 50)
    with tempfile.TemporaryDirectory(prefix="secure-cp-bench-sec-") as tmp_name:
        tmp = Path(tmp_name)
        pki = devpki.generate(tmp / "pki", identity="BENCH-SEC")
        with token_backends(tmp, a.tpm_config) as tokens:
            _say("== ECDSA P-256 signatures per second (sign_digest, SHA-256 digest) ==")
            for name, rate, note in signature_rows(tmp, seconds, tokens):
                value = f"{rate:10.0f} /s" if rate is not None else f"{'-':>10}   "
                _say(f"{name:24} {value}  {note}")
            _say(f"== TLS handshake (TCP + TLS 1.3 + WebSocket upgrade), {handshakes} connections ==")
            for profile in (2, 3):
                times = asyncio.run(handshake_times(pki, profile, handshakes))
                key = "software key" if profile == 3 else "no client key"
                _say(f"profile {profile}, {key:26} {_timing([t * 1000 for t in times])}")
            for name, cfg, note in tokens:
                if cfg is None or cfg.backend != "pkcs11":    # the tpm2 backend cannot serve TLS
                    continue
                try:
                    times = token_handshake_times(tmp, pki, cfg, handshakes)
                    _say(f"profile 3, {name + ' key':26} {_timing([t * 1000 for t in times])}  "
                         f"(pkcs11-provider{', ' + note if note else ''})")
                except Exception as exc:
                    _say(f"profile 3, {name + ' key':26} skipped: {exc}")
        _say(f"== event-loop stall: {SIGNATURES} signatures at {SLOW_SIGNATURE_S * 1000:.0f} ms each, station running ==")
        r = asyncio.run(stall_check(tmp))
        verdict = "PASS" if r["off_loop_ms"] <= STALL_LIMIT_MS else "MISS"
        _say(f"baseline (no signing)         max loop lag {r['baseline_ms']:7.2f} ms")
        _say(f"off the loop (sign_data)      max loop lag {r['off_loop_ms']:7.2f} ms   target <= {STALL_LIMIT_MS:.0f} ms "
             f"{verdict}   (signed in a worker thread: {r['worker_thread']}; "
             f"{r['messages_during_signing']} OCPP messages meanwhile)")
        _say(f"on the loop (contrast)        max loop lag {r['on_loop_ms']:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
