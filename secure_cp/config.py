"""The station's TOML configuration: loaded, validated, and every error names the offending key.

Example (see README for the full reference)::

    [station]
    identity = "CP-0001"
    vendor = "ExampleCorp"
    model = "AC22"
    serial = "SN0001"
    firmware_version = "1.0.0"
    data_dir = "/var/lib/secure-cp"

    [csms]
    url = "ws://csms.example:9000/ocpp"
    protocols = ["ocpp1.6"]
    security_profile = 1
    password = "0011223344556677"      # the AuthorizationKey (1.6: hex text)
    password_encoding = "hex-string"   # or "raw": send the bytes the hex text stands for

    [security]                         # security profiles 2 and 3 (TLS)
    ca_file = "certs/csms-root.pem"    # the CSMS root certificate(s) the station trusts
    cert_file = "certs/station-chain.pem"   # profile 3: station certificate (+ sub-CA), CN = identity
    key_file = "certs/station.key"     # profile 3: its private key (software PEM: development only), or
    # key_label = "station-tls"        #   the label of the key in the [keys] backend (PKCS#11 token: production)

    [files]                            # firmware downloads and log uploads over HTTPS / FTPS
    ca_file = "certs/files-ca.pem"     # extra CA(s) trusted for those servers (besides the system's and the CSMS's)

    [[evse]]
    connectors = 1

    [hardware]
    adapter = "simulated"              # or "package.module:Class"

    [simulator]
    api = "127.0.0.1:8080"
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .security.keys.config import KEYS_SECTION_KEYS, KeysConfig, KeysConfigError, parse_keys_section
from .security.keys.base import KeyBackendError, check_label
from .security.tls import Pkcs11Credential, SoftwareCredential, TlsConfigError, client_context

SUPPORTED_PROTOCOLS = ("ocpp1.6", "ocpp2.0.1")


class ConfigError(ValueError):
    """A bad configuration file: the message names the key."""


@dataclass
class StationConfig:
    identity: str
    vendor: str = "secure-cp"
    model: str = "secure-cp"
    serial: str = ""
    firmware_version: str = ""
    data_dir: Path = Path("/var/lib/secure-cp")
    meter_type: str = ""
    meter_serial: str = ""
    #: [station] storage_low_mb: below this many MB (10^6 bytes) free on data_dir's file system the station raises
    #: the critical security event MemoryExhaustion (while there is still room to record it); 0 = never
    storage_low_mb: float = 32.0
    csms_url: str = "ws://127.0.0.1:9000"
    protocols: list[str] = field(default_factory=lambda: ["ocpp1.6"])
    security_profile: int = 0
    password: str | None = None
    password_encoding: str = "hex-string"
    ca_file: Path | None = None        # [security]: CSMS root certificate(s), PEM (profiles 2 and 3)
    cert_file: Path | None = None      # [security]: station certificate chain, PEM (profile 3)
    key_file: Path | None = None       # [security]: station private key, PEM (profile 3; software key)
    key_label: str | None = None       # [security]: or the label of the station key in the [keys] backend
    keys: KeysConfig = field(default_factory=KeysConfig)   # [keys]: the key backend (software / pkcs11)
    manufacturer_root_file: Path | None = None   # [security]: manufacturer root(s), PEM: firmware signers (L01)
    renew_days: int = 30               # [security]: A03 renewal this many days before the station certificate expires
    firmware_install_command: str | None = None  # [firmware] install_command; None: the simulator's installer
    firmware_revocation: str = "ocsp-soft"   # [firmware] revocation: signer OCSP check, ocsp-soft / ocsp-hard / off
    files_ca_file: Path | None = None  # [files] ca_file: extra CA(s) for HTTPS / FTPS firmware and log servers
    call_timeout: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    connectors: int = 1
    evses: list[int] = field(default_factory=lambda: [1])   # connectors per EVSE, in [[evse]] order
    hardware: str = "simulated"
    hardware_options: dict = field(default_factory=dict)
    simulator_api: str | None = None
    ocpp_config: dict[str, str] = field(default_factory=dict)
    log_format: str = "text"
    log_level: str = "INFO"
    # [eichrecht] (issue #5): "auto" = "meter" when the hardware adapter can sign (SignedMeterAdapter), else "off";
    # "gateway": the station builds and signs the OCMF records with eichrecht_key_label in the [keys] backend
    eichrecht_mode: str = "auto"
    eichrecht_end_timeout: float = 30.0      # s to wait for the final signed reading before the transaction ends
    eichrecht_key_label: str | None = None   # gateway mode: the signing key in the [keys] backend
    eichrecht_fv: str = "1.0"                # gateway mode: OCMF format version written (FV)
    eichrecht_value_16: str = "oca-json"     # 1.6 SignedData value: "oca-json" (OCA note §3.2.1) or "raw" (OCMF)


_SECTIONS = {
    "station": {"identity", "vendor", "model", "serial", "firmware_version", "data_dir", "meter_type", "meter_serial",
                "storage_low_mb"},
    "csms": {"url", "protocols", "security_profile", "password", "password_encoding", "call_timeout",
             "reconnect_min", "reconnect_max"},
    "evse": None,  # array of tables, checked separately
    "security": {"ca_file", "cert_file", "key_file", "key_label", "manufacturer_root_file", "renew_days"},
    "firmware": {"install_command", "revocation"},
    "files": {"ca_file"},
    "keys": KEYS_SECTION_KEYS,
    "hardware": {"adapter", "options"},
    "simulator": {"api"},
    "ocpp": None,  # free-form: OCPP 1.6 configuration keys -> initial values
    "log": {"format", "level"},
    "eichrecht": {"mode", "end_timeout", "key_label", "fv", "ocpp16_value"},
}


def _expect(value: Any, typ, key: str):
    if typ is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise ConfigError(f"{key}: expected {name}, got {type(value).__name__} {value!r}")
    return value


def parse(data: dict, base_dir: Path | None = None) -> StationConfig:
    for section in data:
        if section not in _SECTIONS:
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(sorted(_SECTIONS))})")
    for section, keys in _SECTIONS.items():
        if keys is None or section not in data:
            continue
        if not isinstance(data[section], dict):
            raise ConfigError(f"[{section}]: must be a table")
        for k in data[section]:
            if k not in keys:
                raise ConfigError(f"{section}.{k}: unknown key (known: {', '.join(sorted(keys))})")
    st = data.get("station", {})
    if "identity" not in st:
        raise ConfigError("station.identity: required")
    identity = _expect(st["identity"], str, "station.identity")
    if not identity or len(identity) > 48 or any(ch in identity for ch in "\x00\r\n"):
        raise ConfigError("station.identity: 1..48 printable characters")
    cfg = StationConfig(identity=identity)
    for k in ("vendor", "model", "serial", "firmware_version", "meter_type", "meter_serial"):
        if k in st:
            setattr(cfg, k, _expect(st[k], str, f"station.{k}"))
    if "data_dir" in st:
        d = Path(_expect(st["data_dir"], str, "station.data_dir"))
        cfg.data_dir = d if d.is_absolute() or base_dir is None else base_dir / d
    if "storage_low_mb" in st:
        low = _expect(st["storage_low_mb"], float, "station.storage_low_mb")
        if not 0 <= low < 1e9:
            raise ConfigError(f"station.storage_low_mb: MB free below which MemoryExhaustion is raised, 0 (off) or "
                              f"more, got {low!r}")
        cfg.storage_low_mb = low
    cs = data.get("csms", {})
    if "url" in cs:
        url = _expect(cs["url"], str, "csms.url")
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"csms.url: must start with ws:// or wss://, got {url!r}")
        cfg.csms_url = url
    if "protocols" in cs:
        protos = _expect(cs["protocols"], list, "csms.protocols")
        if not protos:
            raise ConfigError("csms.protocols: at least one protocol")
        for p in protos:
            if p not in SUPPORTED_PROTOCOLS:
                raise ConfigError(f"csms.protocols: {p!r} is not supported (supported: {', '.join(SUPPORTED_PROTOCOLS)})")
        cfg.protocols = list(protos)
    if "security_profile" in cs:
        sp = _expect(cs["security_profile"], int, "csms.security_profile")
        if sp not in (0, 1, 2, 3):
            raise ConfigError("csms.security_profile: 0, 1, 2 or 3")
        cfg.security_profile = sp
    if "password" in cs:
        cfg.password = _expect(cs["password"], str, "csms.password")
    if "password_encoding" in cs:
        enc = _expect(cs["password_encoding"], str, "csms.password_encoding")
        if enc not in ("hex-string", "raw"):
            raise ConfigError("csms.password_encoding: 'hex-string' or 'raw'")
        cfg.password_encoding = enc
    for k in ("call_timeout", "reconnect_min", "reconnect_max"):
        if k in cs:
            v = _expect(cs[k], float, f"csms.{k}")
            if v <= 0:
                raise ConfigError(f"csms.{k}: must be > 0")
            setattr(cfg, k, v)
    if cfg.security_profile in (1, 2) and not cfg.password:
        raise ConfigError(f"csms.password: required for security_profile {cfg.security_profile} (HTTP Basic auth)")
    try:
        cfg.keys = parse_keys_section(data.get("keys", {}), base_dir, cfg.data_dir)
    except KeysConfigError as exc:
        raise ConfigError(str(exc)) from None
    _parse_security(data.get("security", {}), cfg, base_dir)   # after [keys]: key_label refers to its backend
    _parse_firmware(data.get("firmware", {}), data.get("security", {}), cfg, base_dir)
    _parse_files(data.get("files", {}), cfg, base_dir)
    _parse_eichrecht(data.get("eichrecht", {}), cfg)
    if cfg.password and cfg.password_encoding == "raw":
        try:
            bytes.fromhex(cfg.password)
        except ValueError:
            raise ConfigError("csms.password: password_encoding 'raw' needs hex text") from None
    evses = data.get("evse", [{"connectors": 1}])
    if not isinstance(evses, list) or not evses:
        raise ConfigError("evse: use [[evse]] tables, at least one")
    total = 0
    cfg.evses = []
    for i, e in enumerate(evses):
        if not isinstance(e, dict):
            raise ConfigError(f"evse[{i}]: must be a table")
        for k in e:
            if k != "connectors":
                raise ConfigError(f"evse[{i}].{k}: unknown key (known: connectors)")
        n = _expect(e.get("connectors", 1), int, f"evse[{i}].connectors")
        if not 1 <= n <= 16:
            raise ConfigError(f"evse[{i}].connectors: 1..16")
        total += n
        cfg.evses.append(n)
    cfg.connectors = total
    hw = data.get("hardware", {})
    if "adapter" in hw:
        cfg.hardware = _expect(hw["adapter"], str, "hardware.adapter")
        if cfg.hardware != "simulated" and ":" not in cfg.hardware:
            raise ConfigError("hardware.adapter: 'simulated' or 'package.module:Class'")
    if "options" in hw:
        cfg.hardware_options = dict(_expect(hw["options"], dict, "hardware.options"))
    sim = data.get("simulator", {})
    if "api" in sim:
        api = _expect(sim["api"], str, "simulator.api")
        host, sep, port = api.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"simulator.api: 'host:port', got {api!r}")
        cfg.simulator_api = api
    for k, v in data.get("ocpp", {}).items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)
        elif isinstance(v, list):
            v = ",".join(str(x) for x in v)
        cfg.ocpp_config[k] = _expect(v, str, f"ocpp.{k}")
    lg = data.get("log", {})
    if "format" in lg:
        cfg.log_format = _expect(lg["format"], str, "log.format")
        if cfg.log_format not in ("text", "json"):
            raise ConfigError("log.format: 'text' or 'json'")
    if "level" in lg:
        cfg.log_level = _expect(lg["level"], str, "log.level").upper()
        if cfg.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("log.level: DEBUG, INFO, WARNING or ERROR")
    return cfg


def _parse_eichrecht(sec: dict, cfg: StationConfig) -> None:
    """[eichrecht]: the signing mode, the wait for the final signed reading, the gateway key, the 1.6 value form."""
    if "mode" in sec:
        cfg.eichrecht_mode = _expect(sec["mode"], str, "eichrecht.mode")
        if cfg.eichrecht_mode not in ("auto", "meter", "gateway", "off"):
            raise ConfigError("eichrecht.mode: 'auto', 'meter', 'gateway' or 'off'")
    if "end_timeout" in sec:
        value = sec["end_timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
            raise ConfigError("eichrecht.end_timeout: seconds, > 0 and <= 600")
        cfg.eichrecht_end_timeout = float(value)
    if "key_label" in sec:
        label = _expect(sec["key_label"], str, "eichrecht.key_label")
        try:
            check_label(label)
        except KeyBackendError as exc:
            raise ConfigError(f"eichrecht.key_label: {exc}") from None
        cfg.eichrecht_key_label = label
    if cfg.eichrecht_mode == "gateway" and not cfg.eichrecht_key_label:
        raise ConfigError("eichrecht.key_label: required for mode 'gateway' (the signing key in the [keys] backend)")
    if "fv" in sec:
        fv = _expect(sec["fv"], str, "eichrecht.fv")
        parts = fv.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ConfigError("eichrecht.fv: '<major>.<minor>', e.g. '1.0'")
        cfg.eichrecht_fv = fv
    if "ocpp16_value" in sec:
        cfg.eichrecht_value_16 = _expect(sec["ocpp16_value"], str, "eichrecht.ocpp16_value")
        if cfg.eichrecht_value_16 not in ("oca-json", "raw"):
            raise ConfigError("eichrecht.ocpp16_value: 'oca-json' (OCA application note) or 'raw' (the OCMF string)")


def _parse_firmware(fw: dict, sec: dict, cfg: StationConfig, base_dir: Path | None) -> None:
    """[firmware] install_command (the installer hook of secure firmware update), revocation (the signer's OCSP
    policy) and [security]
    manufacturer_root_file (the roots firmware signing certificates must chain to), read and checked here."""
    if "install_command" in fw:
        command = _expect(fw["install_command"], str, "firmware.install_command")
        if not command.strip():
            raise ConfigError("firmware.install_command: must not be empty")
        cfg.firmware_install_command = command
    if "revocation" in fw:      # the firmware signer's OCSP check (firmware.py): what an unknown status does
        from .firmware import REVOCATION_POLICIES
        policy = _expect(fw["revocation"], str, "firmware.revocation")
        if policy not in REVOCATION_POLICIES:
            raise ConfigError(f"firmware.revocation: one of {', '.join(REVOCATION_POLICIES)}")
        cfg.firmware_revocation = policy
    if "renew_days" in sec:   # A03.FR.02 says one month; a fleet may want more margin
        cfg.renew_days = _expect(sec["renew_days"], int, "security.renew_days")
        if not 1 <= cfg.renew_days <= 365:
            raise ConfigError("security.renew_days: 1 to 365 (days before expiry the certificate is renewed)")
    if "manufacturer_root_file" in sec:
        cfg.manufacturer_root_file = _ca_file(sec["manufacturer_root_file"], "security.manufacturer_root_file",
                                              base_dir)


def _ca_file(value, setting: str, base_dir: Path | None) -> Path:
    """A PEM file of CA certificates (relative to the configuration file), checked to hold at least one."""
    p = Path(_expect(value, str, setting))
    path = p if p.is_absolute() or base_dir is None else base_dir / p
    try:
        from .firmware import load_roots
        if not load_roots(path):
            raise ValueError("no certificate in it")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}: {exc}") from None
    return path


def _parse_files(files: dict, cfg: StationConfig, base_dir: Path | None) -> None:
    """[files] ca_file: CA certificate(s), PEM, that HTTPS / FTPS firmware and log servers may chain to, on top of
    the operating system's CAs and the CSMS roots (2.0.1 N01.FR.15/16; runtime ``_transfer_context``)."""
    if "ca_file" in files:
        cfg.files_ca_file = _ca_file(files["ca_file"], "files.ca_file", base_dir)


def _parse_security(sec: dict, cfg: StationConfig, base_dir: Path | None) -> None:
    """[security]: the TLS files, relative to the configuration file. Checked here by building the TLS context
    (files exist, are PEM, key matches certificate), so a bad file stops the start with a message naming the key."""
    for k in ("ca_file", "cert_file", "key_file"):
        if k in sec:
            p = Path(_expect(sec[k], str, f"security.{k}"))
            setattr(cfg, k, p if p.is_absolute() or base_dir is None else base_dir / p)
    sp = cfg.security_profile
    scheme = "wss" if sp >= 2 else "ws"
    if not cfg.csms_url.startswith(scheme + "://"):
        raise ConfigError(f"csms.url: security_profile {sp} needs a {scheme}:// url, got {cfg.csms_url!r}")
    if sp < 2:
        return
    if cfg.ca_file is None:
        raise ConfigError(f"security.ca_file: required for security_profile {sp} (the CSMS root certificate)")
    if "key_label" in sec:
        cfg.key_label = _expect(sec["key_label"], str, "security.key_label")
        if cfg.key_file is not None:
            raise ConfigError("security.key_label: give key_file (a PEM file) or key_label (a key in [keys]), not both")
        try:
            check_label(cfg.key_label)
        except KeyBackendError as exc:
            raise ConfigError(f"security.key_label: {exc}") from None
        if cfg.keys.backend == "tpm2":     # OpenSSL cannot use its blobs (Tpm2Backend.key_ref)
            raise ConfigError("security.key_label: the [keys] backend 'tpm2' cannot serve TLS; for a TLS key in "
                              "the TPM use backend 'pkcs11' with tpm2-pkcs11 and pkcs11-provider (hsm/README.md)")
    if sp == 3:
        if cfg.cert_file is None:
            raise ConfigError("security.cert_file: required for security_profile 3 (the station certificate)")
        if cfg.key_file is None and cfg.key_label is None:
            raise ConfigError("security.key_file: required for security_profile 3 (the station key: key_file, or "
                              "key_label for a key in the [keys] backend)")
    try:
        credential = station_credential(cfg)
        if isinstance(credential, Pkcs11Credential):   # the token is used at the first connection, not here: a
            credential.check()                         # token error then makes a failed attempt, not a dead station
            tls_context(cfg, 2)
        else:
            tls_context(cfg, sp)
    except TlsConfigError as exc:
        raise ConfigError(f"security.{exc.setting or 'ca_file'}: {exc}") from None


def tls_context(cfg: StationConfig, security_profile: int, extra_roots: Sequence = ()):
    """The station's TLS client context for ``security_profile`` (2 or 3) from the [security] files, trusting the
    CSMS roots ``extra_roots`` (installed with InstallCertificate, M05) as well. Raises TlsConfigError (naming the
    file and, in ``setting``, the key) if they are missing or unusable."""
    if cfg.ca_file is None and not extra_roots:
        raise TlsConfigError("no CSMS root certificate configured", setting="ca_file")
    credential = station_credential(cfg) if security_profile == 3 else None
    if security_profile == 3 and credential is None:
        raise TlsConfigError("no station certificate and key configured", setting="cert_file")
    return client_context(security_profile, cfg.ca_file, credential, extra_roots)


def station_credential(cfg: StationConfig) -> SoftwareCredential | Pkcs11Credential | None:
    """The station's TLS client credential (profile 3) from [security] and [keys], or None when not configured:
    ``key_file`` (PEM, development), or ``key_label`` in the [keys] backend (software: its PEM file; pkcs11: the
    token, through OpenSSL's pkcs11-provider)."""
    if cfg.cert_file is None:
        return None
    if cfg.key_file is not None:
        return SoftwareCredential(cfg.cert_file, cfg.key_file)
    if cfg.key_label is None:
        return None
    if cfg.keys.backend == "pkcs11":
        assert cfg.keys.module is not None and cfg.keys.token is not None   # parse_keys_section checked them
        return Pkcs11Credential(cfg.cert_file, cfg.key_label, cfg.keys.token, cfg.keys.module,
                                cfg.data_dir / "pkcs11")
    return SoftwareCredential(cfg.cert_file, cfg.keys.dir / f"{cfg.key_label}.key.pem")


def load(path: str | Path) -> StationConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path.parent)
