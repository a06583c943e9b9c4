"""Logging: readable text by default, one JSON object per line on request (for journald / log shippers)."""
from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

#: The station's own log in its data directory (what GetLog DiagnosticsLog uploads): size and rotated copies kept.
FILE_LOG_NAME = "secure-cp.log"
FILE_LOG_BYTES = 1_000_000
FILE_LOG_BACKUPS = 4


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text", stream=sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websockets", "ocpp", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class _UtcFormatter(logging.Formatter):
    """Each record starts with its RFC 3339 UTC time, so a GetLog window (oldestTimestamp..latestTimestamp) can be
    cut out of the file (diagnostics.LogUploads)."""
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


def add_file_log(data_dir: Path, logger_name: str = "secure_cp") -> logging.Handler:
    """A rotating log file ``<data_dir>/log/secure-cp.log`` for the ``secure_cp`` loggers, unless one writes there
    already (then that one is returned). The logger's level still decides what is written."""
    path = (Path(data_dir) / "log" / FILE_LOG_NAME).resolve()
    logger = logging.getLogger(logger_name)
    for h in logger.handlers:
        if isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == path:
            return h
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=FILE_LOG_BYTES, backupCount=FILE_LOG_BACKUPS,
                                                   encoding="utf-8")
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logger.addHandler(handler)
    return handler


def remove_file_log(handler: logging.Handler, logger_name: str = "secure_cp") -> None:
    logging.getLogger(logger_name).removeHandler(handler)
    handler.close()


def file_log_paths(data_dir: Path) -> list[Path]:
    """The log file and its rotated copies, oldest first."""
    base = Path(data_dir) / "log" / FILE_LOG_NAME
    rotated = [base.with_name(f"{FILE_LOG_NAME}.{i}") for i in range(FILE_LOG_BACKUPS, 0, -1)]
    return [p for p in rotated if p.exists()] + [base]
