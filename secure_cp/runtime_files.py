"""Log upload and firmware update glue of the runtime: the GetLog jobs (N01, diagnostics.LogUploads) and their
LogStatusNotifications, the secure firmware update (L01, firmware.FirmwareUpdates) with its status notifications,
connector hold and reboot, and the TLS context of the file servers both use.

:class:`StationFiles` is a mixin of :class:`secure_cp.runtime.Station`, the only class that uses it. The attributes
it reads are Station's (set in ``Station.__init__`` / ``_open_store``), typed in runtime_parts.StationParts and below;
nothing here is imported from ``secure_cp.runtime`` at run time.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Callable

from . import lazy
from .diagnostics import LogUploads
from .engine.station import HOLD_FIRMWARE
from .firmware import CommandInstaller, FirmwareUpdates, SimulatedInstaller
from .logsetup import file_log_paths
from .runtime_parts import StationParts
from .store import KeyValue

if TYPE_CHECKING:
    from .engine import Engine

serialization = lazy.module("cryptography.hazmat.primitives.serialization")
log = logging.getLogger("secure_cp.runtime")   # the Station's logger: these are its methods
#: s the firmware update waits for the CSMS to confirm InstallRebooting before it reboots anyway (offline).
FIRMWARE_REBOOT_WAIT = 30.0


class StationFiles(StationParts):
    """Station's log upload and firmware update methods (see the module docstring)."""

    engine: Engine
    logs: LogUploads
    firmware: FirmwareUpdates
    _transfer_ctx: ssl.SSLContext | None
    _stopping: bool
    _wake: asyncio.Event

    if TYPE_CHECKING:   # Station's (runtime) and StationSecurity's (runtime_security)
        def _event(self, fn: Callable, *args) -> list[str]: ...

        def _send_all(self, texts: list[str]) -> None: ...

        def _configured_csms_roots(self) -> list: ...

        def _manufacturer_roots(self) -> list: ...

    def _log_uploads(self) -> LogUploads:
        """GetLog jobs (diagnostics.LogUploads) over this boot's store; a job of the previous boot ends with it."""
        old = getattr(self, "logs", None)
        if old is not None:
            old.close()
        return LogUploads(security_events=self.security_events, log_files=lambda: file_log_paths(self.cfg.data_dir),
                          identity=self.cfg.identity, report=self._on_log_status, ssl_context=self._transfer_context())

    def _on_log_status(self, status: str, request_id: int) -> None:
        """A log upload's status (on the loop): a LogStatusNotification of the active adapter (N01.FR.07-10)."""
        self._send_all(self._event(self._log_status, status, request_id, self.clock.now()))

    def _log_status(self, status: str, request_id: int, now: float) -> list[str]:
        self.adapter.log_status(status, request_id, now)
        return self.adapter.poll(now)

    def _firmware_updates(self) -> FirmwareUpdates:
        """Secure firmware update (firmware.FirmwareUpdates) over this boot's store; a job of the previous boot
        ends with it. The installer: ``[firmware] install_command``, else the simulator's (keeps the image)."""
        old = getattr(self, "firmware", None)
        if old is not None:
            old.close()
        command = self.cfg.firmware_install_command
        work_dir = self.cfg.data_dir / "firmware"
        installer = CommandInstaller(command) if command else SimulatedInstaller(work_dir)
        return FirmwareUpdates(kv=KeyValue(self.db, "firmware"), security_events=self.security_events,
                               manufacturer_roots=self._manufacturer_roots, report=self._on_firmware_status,
                               reboot=self._firmware_reboot, clock=self.clock.now, installer=installer,
                               idle=lambda: not any(c.tx_key for c in self.engine.connectors.values()),
                               hold=self._firmware_hold, work_dir=work_dir, ssl_context=self._transfer_context(),
                               revocation=self.cfg.firmware_revocation)

    def _transfer_context(self) -> ssl.SSLContext:
        """TLS for HTTPS / FTPS firmware downloads and log uploads (2.0.1 L01 / N01, 1.6 whitepaper L01 / N01), host
        names checked: the CSMS trust chain (N01.FR.15 "at least": the installed CSMSRootCertificates and the
        ``[security] ca_file``), the operating system's CAs (N01.FR.16 recommends them: the file server may be a
        cloud service outside the CSMS trust chain) and the ``[files] ca_file`` (a private CA of the operator's file
        servers). Made once, rebuilt when the CSMS roots change (_refresh_transfer_context)."""
        if self._transfer_ctx is not None:
            return self._transfer_ctx
        context = self._transfer_ctx = ssl.create_default_context()
        roots = self.certificates.csms_roots() + self._configured_csms_roots()
        if roots:
            context.load_verify_locations(cadata="".join(
                c.public_bytes(serialization.Encoding.PEM).decode() for c in roots))
        if self.cfg.files_ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.cfg.files_ca_file))
            except (OSError, ssl.SSLError) as exc:   # checked at load; a file changed since then: logged, skipped
                log.error("files.ca_file %s unusable: %s", self.cfg.files_ca_file, exc)
        return context

    def _refresh_transfer_context(self) -> None:
        """The CSMS roots changed: the next download / upload trusts the new set."""
        self._transfer_ctx = None
        for service in (getattr(self, "firmware", None), getattr(self, "logs", None)):
            if service is not None:
                service.ssl_context = self._transfer_context()

    def _firmware_hold(self, on: bool) -> None:
        """L01.FR.07: while a firmware installation waits for the transactions to end, every connector without one is
        Unavailable (and each one whose transaction ends follows), unless ChargingStation.
        AllowNewSessionsPendingFirmwareUpdate is true. Lifted when the update fails or is cancelled; after
        InstallRebooting the reboot ends it (the new boot reports the connectors Available again)."""
        if on and (self.model.get("ChargingStation", "AllowNewSessionsPendingFirmwareUpdate") or "").lower() == "true":
            return
        self._send_all(self._event(self._hold_for_firmware, on, self.clock.now()))

    def _hold_for_firmware(self, on: bool, now: float) -> list[str]:
        self.engine.hold(sorted(self.engine.connectors), HOLD_FIRMWARE, on, now)
        return self.adapter.poll(now)

    def _on_firmware_status(self, status: str, request_id: int,
                            on_result: Callable[[dict | None], None] | None = None) -> None:
        """A firmware update's status (on the loop): a (Signed)FirmwareStatusNotification of the active adapter."""
        self._send_all(self._event(self._firmware_status, status, request_id, on_result, self.clock.now()))

    def _firmware_status(self, status: str, request_id: int, on_result, now: float) -> list[str]:
        self.adapter.firmware_status(status, request_id, now, on_result)
        return self.adapter.poll(now)

    def _firmware_reboot(self, request_id: int) -> None:
        """L01.FR.15 / L01.FR.32 (a): InstallRebooting, then (once the CSMS has it, or FIRMWARE_REBOOT_WAIT s later)
        the reboot that activates the image, with boot reason FirmwareUpdate."""
        loop = asyncio.get_running_loop()
        done = False

        def reboot() -> None:
            nonlocal done
            if done or self._stopping:
                return
            done = True
            timer.cancel()
            log.warning("rebooting to activate firmware update %d", request_id)
            self._send_all(self._event(self._reboot_for_firmware, self.clock.now()))
            self._wake.set()
        timer = loop.call_later(FIRMWARE_REBOOT_WAIT, reboot)
        self._on_firmware_status("InstallRebooting", request_id, lambda res: loop.call_soon(reboot))

    def _reboot_for_firmware(self, now: float) -> list[str]:
        self.engine.reset(False, now)
        self.engine.kv.set("boot_reason", "FirmwareUpdate")
        KeyValue(self.db, "v201").delete("boot_reason")
        return self.adapter.poll(now)
