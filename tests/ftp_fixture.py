"""A real FTP / FTPS server in the test process (pyftpdlib, in a thread) for firmware downloads and log uploads.

``FtpServer(root)`` serves the directory ``root`` to one user (``USER`` / ``PASSWORD``, full rights) in passive mode
on 127.0.0.1; with ``tls=(cert_file, key_file)`` it is an FTPS server that requires explicit TLS (AUTH TLS) on the
control connection and PROT P on the data connection. ``cut_after = n`` makes the server go away (control and data
connection closed) once it has sent ``n`` bytes of a download: the "server gone mid-transfer" case. ``commands``
records every command received (the password of PASS is not kept)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

USER = "station"
PASSWORD = "s3cret:pw"          # a ':' in the password: it must be percent-encoded in the URL and decoded again
PASSWORD_URL = "s3cret%3Apw"

logging.getLogger("pyftpdlib").setLevel(logging.WARNING)


class FtpServer:
    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.cut_after: int | None = None
        self.commands: list[str] = []
        outer = self
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmw")

        class CuttingDTP(DTPHandler):
            def send(self, data):
                sent = super().send(data)
                if outer.cut_after is not None and self.tot_bytes_sent >= outer.cut_after:
                    self.ioloop.call_later(0, self.cmd_channel.close)     # the server goes away
                return sent

        base = TLS_FTPHandler if tls else FTPHandler

        class Handler(base):  # type: ignore[misc, valid-type]
            def pre_process_command(self, line, cmd, arg):
                outer.commands.append(cmd if cmd == "PASS" else line)
                return super().pre_process_command(line, cmd, arg)

        Handler.authorizer = authorizer
        Handler.banner = "secure-cp test FTP server"
        if tls:
            Handler.certfile = str(tls[0])
            Handler.keyfile = str(tls[1])
            Handler.tls_control_required = True
            Handler.tls_data_required = True
        else:
            Handler.dtp_handler = CuttingDTP
            Handler.use_sendfile = False
        self.server = FTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftp-server", daemon=True)

    def url(self, path: str, *, scheme: str = "ftp", password: str = PASSWORD_URL) -> str:
        return f"{scheme}://{USER}:{password}@127.0.0.1:{self.port}{path}"

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self.server.close_all()

    def __enter__(self) -> "FtpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
