"""FTP and FTPS transfers (``secure_cp.filetransfer``) against a real pyftpdlib server in this process: passive mode
(L01 / N01 remark), user:password from the URL (percent-decoded), explicit TLS with PROT P for ftps (L01.FR.08), and
the failures the firmware and log jobs turn into DownloadFailed / UploadFailure / PermissionDenied: wrong password,
missing file, untrusted server certificate, server gone mid-transfer."""
from __future__ import annotations

import ssl

import pytest

from ftp_fixture import FtpServer
from secure_cp.filetransfer import TransferError, ftp_download, ftp_upload
from secure_cp.security import devpki

DATA = bytes(range(256)) * 4096          # 1 MiB: many blocks, so a cut happens mid-transfer


@pytest.fixture
def ftp(tmp_path):
    with FtpServer(tmp_path / "ftp") as server:
        yield server


@pytest.fixture
def ftps(tmp_path):
    root = devpki.unknown_ca(tmp_path / "pki", "ftp-root")
    chain, key = devpki.server_certificate(tmp_path / "pki", "ftp-server", root)
    with FtpServer(tmp_path / "ftps", tls=(chain, key)) as server:
        server.ca_file = root.cert_file
        yield server


def download(url: str, **kw) -> bytes:
    out = bytearray()
    ftp_download(url, out.extend, timeout=10, **kw)
    return bytes(out)


def test_ftp_download_passive_with_credentials_from_the_url(ftp):
    ftp.put("/fw/image.bin", DATA)
    assert download(ftp.url("/fw/image.bin")) == DATA
    assert "USER station" in ftp.commands and "PASS" in ftp.commands       # the decoded user:password logged in
    assert any(c in ("PASV", "EPSV") for c in ftp.commands)                # passive mode
    assert not any(c.startswith(("PORT", "EPRT")) for c in ftp.commands)
    assert "TYPE I" in ftp.commands and "RETR fw/image.bin" in ftp.commands


def test_ftp_wrong_password_missing_file_and_no_server(ftp):
    ftp.put("/fw/image.bin", DATA)
    with pytest.raises(TransferError) as info:
        download(ftp.url("/fw/image.bin", password="wrong"))
    assert info.value.kind == "permission"
    with pytest.raises(TransferError) as info:
        download(ftp.url("/fw/missing.bin"))
    assert info.value.kind == "failure" and "550" in str(info.value)
    with pytest.raises(TransferError) as info:
        download(ftp.url("/fw/image.bin").replace(str(ftp.port), "1"))       # nothing listens on port 1
    assert info.value.kind == "failure"


def test_ftp_server_gone_mid_transfer_is_a_failure_not_a_short_file(ftp):
    ftp.put("/fw/image.bin", DATA)
    ftp.cut_after = 64 * 1024
    out = bytearray()
    with pytest.raises(TransferError) as info:
        ftp_download(ftp.url("/fw/image.bin"), out.extend, timeout=10)
    assert info.value.kind == "failure"
    assert len(out) < len(DATA)


def test_ftp_download_cancelled(ftp):
    ftp.put("/fw/image.bin", DATA)
    with pytest.raises(TransferError, match="cancelled"):
        ftp_download(ftp.url("/fw/image.bin"), lambda b: None, timeout=10, cancelled=lambda: True)


def test_ftp_upload_into_a_directory_or_to_a_file_path(ftp):
    (ftp.root / "logs").mkdir()
    assert ftp_upload(ftp.url("/logs/"), "a.zip", b"one", timeout=10) == "logs/a.zip"
    assert ftp_upload(ftp.url("/logs"), "b.zip", b"two", timeout=10) == "logs/b.zip"   # a directory without '/'
    assert ftp_upload(ftp.url("/logs/named.zip"), "c.zip", b"three", timeout=10) == "logs/named.zip"
    assert (ftp.root / "logs" / "a.zip").read_bytes() == b"one"
    assert (ftp.root / "logs" / "b.zip").read_bytes() == b"two"
    assert (ftp.root / "logs" / "named.zip").read_bytes() == b"three"
    with pytest.raises(TransferError) as info:
        ftp_upload(ftp.url("/logs/", password="wrong"), "d.zip", b"four", timeout=10)
    assert info.value.kind == "permission"
    assert not (ftp.root / "logs" / "d.zip").exists()


def test_ftps_explicit_tls_download_and_upload(ftps):
    context = ssl.create_default_context(cafile=str(ftps.ca_file))
    ftps.put("/fw.bin", DATA)
    assert download(ftps.url("/fw.bin", scheme="ftps"), context=context) == DATA
    assert ftp_upload(ftps.url("/", scheme="ftps"), "log.zip", b"log", timeout=10, context=context) == "log.zip"
    assert (ftps.root / "log.zip").read_bytes() == b"log"
    assert "AUTH TLS" in ftps.commands and "PROT P" in ftps.commands
    assert ftps.commands.index("AUTH TLS") < ftps.commands.index("PASS")    # the password only inside TLS


def test_ftps_untrusted_server_certificate_and_plain_ftp_refused(ftps):
    ftps.put("/fw.bin", DATA)
    with pytest.raises(TransferError) as info:                 # default context: the dev root is not trusted
        download(ftps.url("/fw.bin", scheme="ftps"))
    assert info.value.kind == "failure" and "TLS" in str(info.value)
    assert "PASS" not in ftps.commands
    with pytest.raises(TransferError) as info:                 # the server requires TLS: ftp:// is refused
        download(ftps.url("/fw.bin"))
    assert info.value.kind == "failure" and "550" in str(info.value)
