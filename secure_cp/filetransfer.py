"""FTP and FTPS file transfer for firmware downloads (L01) and log uploads (N01), blocking: call from a worker thread.

OCPP leaves the transfer to the URL: ``ftp://user:password@host:port/path`` (the 1.6 Security Whitepaper N01
remark: ``User:password@``, ``:password`` and ``:port`` may be left out; without a user the login is anonymous).
``ftps://`` is FTP with explicit TLS (RFC 4217: AUTH TLS on the control connection, then PROT P so the data
connection is encrypted too), verified with the given ``ssl.SSLContext`` (host name included). Both use passive mode
(L01 / N01 remark: "FTP needs to be able to use Passive FTP"); every socket operation is bounded by ``timeout``.

The path is taken relative to the login directory (RFC 1738 §3.2.2), percent-decoded. An upload location that is a
directory (ends in ``/``, is empty, or the server lets the station change into it) receives the file under its
``filename``; any other path names the file itself. A download whose size differs from what the server announced
(SIZE) is a failed one: a server that went away mid-transfer never yields a truncated image.

Failures raise ``TransferError`` with a ``kind`` the callers map onto their status enumerations: ``permission``
(login refused, no access), ``unsupported`` (the server does not implement a command), ``bad_message`` (syntax
error answers), ``failure`` (everything else: network, timeouts, missing file, server gone)."""
from __future__ import annotations

import io
import posixpath
import ssl
import urllib.parse
from typing import Callable

from . import lazy

ftplib = lazy.module("ftplib")     # imported at the first FTP transfer, not at start-up

__all__ = ["FTP_SCHEMES", "TransferError", "ftp_download", "ftp_upload"]

FTP_SCHEMES = frozenset({"ftp", "ftps"})
BLOCK = 1 << 16


class TransferError(Exception):
    """A transfer failed; ``kind`` is permission | unsupported | bad_message | failure (see the module doc)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def _kind(reply: str) -> str:
    """The failure kind of an FTP error reply (RFC 959 §4.2 codes)."""
    code = reply[:3]
    if code in ("530", "532", "553") or (code == "550" and "denied" in reply.lower()):
        return "permission"
    if code in ("502", "504"):
        return "unsupported"
    if code in ("500", "501"):
        return "bad_message"
    return "failure"


def _connect(location: str, timeout: float, context: ssl.SSLContext | None) -> tuple[ftplib.FTP, str]:
    """A logged-in session in binary, passive mode (PROT P for ftps) and the path of ``location``."""
    parts = urllib.parse.urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme not in FTP_SCHEMES or not parts.hostname:
        raise TransferError("failure", f"not an FTP(S) URL: {scheme or 'no'}://")
    user = urllib.parse.unquote(parts.username) if parts.username is not None else "anonymous"
    password = urllib.parse.unquote(parts.password or "") if parts.username is not None else "anonymous@"
    ftp: ftplib.FTP
    if scheme == "ftps":
        ftp = ftplib.FTP_TLS(context=context or ssl.create_default_context(), timeout=timeout)
    else:
        ftp = ftplib.FTP(timeout=timeout)
    try:
        ftp.connect(parts.hostname, parts.port or 21, timeout=timeout)
        ftp.login(user, password)            # FTP_TLS: AUTH TLS first, so the password travels encrypted
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()                     # the data connection is encrypted too
        ftp.set_pasv(True)
        ftp.voidcmd("TYPE I")
    except BaseException:
        _close(ftp)
        raise
    return ftp, urllib.parse.unquote(parts.path).lstrip("/")


def _close(ftp: ftplib.FTP) -> None:
    if ftp.sock is None:             # never connected
        return
    try:
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        ftp.close()


def _translate(fn: Callable[[], None]) -> None:
    """Run ``fn``; every ftplib / network / TLS failure becomes a TransferError."""
    try:
        fn()
    except TransferError:
        raise
    except ftplib.error_perm as exc:
        raise TransferError(_kind(str(exc)), f"FTP {exc}") from None
    except ftplib.Error as exc:          # error_temp (4xx), error_reply, error_proto
        raise TransferError("failure", f"FTP {exc}") from None
    except ssl.SSLError as exc:
        raise TransferError("failure", f"TLS: {exc.reason or exc}") from None
    except TimeoutError:               # socket.timeout is TimeoutError
        raise TransferError("failure", "timed out") from None
    except EOFError:                     # the control connection closed under us
        raise TransferError("failure", "the server closed the connection") from None
    except OSError as exc:
        raise TransferError("failure", str(exc.strerror or exc)) from None


def ftp_download(location: str, write: Callable[[bytes], None], *, timeout: float,
                 context: ssl.SSLContext | None = None, cancelled: Callable[[], bool] = lambda: False) -> int:
    """Retrieve ``location`` block by block into ``write``; the number of bytes. Raises TransferError, also when
    ``cancelled()`` turns true during the transfer or the file arrives shorter or longer than announced."""
    received = 0

    def run() -> None:
        ftp, path = _connect(location, timeout, context)
        try:
            if not path:
                raise TransferError("failure", "the URL names no file")
            try:
                size: int | None = ftp.size(path)
            except ftplib.error_perm:      # SIZE not offered, or the file is missing (RETR says which)
                size = None

            def block(data: bytes) -> None:
                nonlocal received
                if cancelled():
                    raise TransferError("failure", "cancelled")
                received += len(data)
                write(data)

            ftp.retrbinary(f"RETR {path}", block, blocksize=BLOCK)
            if size is not None and size != received:
                raise TransferError("failure", f"incomplete: {received} of {size} bytes")
        finally:
            _close(ftp)

    _translate(run)
    return received


def ftp_upload(location: str, filename: str, data: bytes, *, timeout: float,
               context: ssl.SSLContext | None = None) -> str:
    """Store ``data`` at ``location`` (a directory: as ``filename`` in it); the path written. Raises
    TransferError."""
    stored = ""

    def run() -> None:
        nonlocal stored
        ftp, path = _connect(location, timeout, context)
        try:
            target = path
            if not path or path.endswith("/"):
                target = path + filename
            else:
                try:                       # an existing directory named without the trailing slash
                    ftp.cwd(path)
                    target = filename
                except ftplib.error_perm:
                    pass
            ftp.storbinary(f"STOR {target}", io.BytesIO(data), blocksize=BLOCK)
            stored = posixpath.join(path, filename) if target == filename else target
        finally:
            _close(ftp)

    _translate(run)
    return stored
