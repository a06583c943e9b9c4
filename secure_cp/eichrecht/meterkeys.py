"""The meters' public keys with their history, and the forms a key is shown in.

A meter's key changes only when the meter (or its signing capsule) is swapped; every record in the legal log
names the key it was signed with (``meter_key_id``), so a record signed by a meter that has since been replaced
still verifies. Forms of a key: DER SubjectPublicKeyInfo as hex (S.A.F.E. transparency software, the BNetzA
register); the OCA application note's ``publicKey`` value (base64 of ``oca:base16:asn1:<hex>``, §5.3); and a
display string for the charger's label (the curve point in blocks of four hex digits).
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["MeterKey", "MeterKeys", "public_key_hex", "oca_public_key", "display_public_key", "load_public_key",
           "PublicKeyError"]


class PublicKeyError(ValueError):
    """A public key text is not a usable EC key; the message says why."""


def load_public_key(text: str | bytes):
    """A ``cryptography`` EC public key from DER bytes, or from text: hex DER (upper or lower case, spaces allowed),
    base64 DER, or the OCA form (base64 of ``oca:base16:asn1:<hex>``, also accepted without the base64 layer)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    der = _der_of(text)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        raise PublicKeyError(f"not a DER SubjectPublicKeyInfo: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PublicKeyError(f"not an elliptic-curve key ({type(key).__name__})")
    return key


def _der_of(text: str | bytes) -> bytes:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    compact = "".join(str(text).split())
    if not compact:
        raise PublicKeyError("the public key is empty")
    if compact.startswith("oca:"):
        return _der_of_oca(compact)
    try:
        return bytes.fromhex(compact)
    except ValueError:
        pass
    try:
        decoded = base64.b64decode(compact, validate=True)
    except ValueError:
        raise PublicKeyError("neither hex nor base64: "
                             f"{compact[:24]!r}{'...' if len(compact) > 24 else ''}") from None
    if decoded.startswith(b"oca:"):
        return _der_of_oca(decoded.decode("ascii", "replace"))
    return decoded


def _der_of_oca(text: str) -> bytes:
    parts = text.split(":", 3)
    if len(parts) != 4 or parts[1] != "base16" or parts[2] != "asn1":
        raise PublicKeyError(f"OCA public key {text[:24]!r}: expected 'oca:base16:asn1:<hex>'")
    try:
        return bytes.fromhex(parts[3])
    except ValueError as exc:
        raise PublicKeyError(f"OCA public key: bad hex ({exc})") from None


def public_key_hex(der: bytes) -> str:
    """DER SubjectPublicKeyInfo as upper-case hex (how the transparency software and the BNetzA register take it)."""
    return der.hex().upper()


def oca_public_key(der: bytes) -> str:
    """The ``publicKey`` value of OCPP's signedMeterValue (OCA "Signed Meter Values in OCPP" §3.2.2 / §5.3) and of
    1.6 ``MeterPublicKey<N>`` / 2.0.1 ``FiscalMetering.PublicKey``."""
    return base64.b64encode(f"oca:base16:asn1:{der.hex()}".encode("ascii")).decode("ascii")


def display_public_key(der: bytes, *, per_line: int = 8) -> str:
    """The key for the charger's label or display: the curve point (X and Y, without the 04 prefix) in upper-case
    blocks of four hex digits, ``per_line`` blocks a line; what a customer compares with the transparency software."""
    from cryptography.hazmat.primitives import serialization
    key = load_public_key(der)
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)[1:]
    blocks = [point[i:i + 2].hex().upper() for i in range(0, len(point), 2)]
    return "\n".join(" ".join(blocks[i:i + per_line]) for i in range(0, len(blocks), per_line))


@dataclass(frozen=True)
class MeterKey:
    """One public key of one meter; ``retired_at`` None: the meter's current key."""
    id: int
    meter: str
    evse_id: int | None
    connector_id: int | None
    serial: str | None
    public_key: str             # DER hex, upper case
    installed_at: float
    retired_at: float | None

    @property
    def der(self) -> bytes:
        return bytes.fromhex(self.public_key)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "meter": self.meter, "evse_id": self.evse_id, "connector_id": self.connector_id,
                "serial": self.serial, "public_key": self.public_key, "oca": oca_public_key(self.der),
                "display": display_public_key(self.der), "installed_at": self.installed_at,
                "retired_at": self.retired_at}


_COLUMNS = "id, meter, evse_id, connector_id, serial, public_key, installed_at, retired_at"


def _key(row) -> MeterKey:
    return MeterKey(*row)


class MeterKeys:
    """The ``meter_keys`` table. ``store``: a :class:`~secure_cp.store.db.Database` (reads work on any object with
    ``query(sql, params)``, such as :class:`~.legallog.ReadOnlyStore`)."""

    def __init__(self, store) -> None:
        self._db = store

    def register(self, meter: str, public_key_der: bytes, *, evse_id: int | None = None,
                 connector_id: int | None = None, serial: str | None = None, now: float | None = None) -> MeterKey:
        """Record ``meter``'s key (at every start, from the meter). The same key again changes nothing; a new key
        (a meter swap) retires the previous one and becomes current, in one transaction."""
        hex_key = public_key_hex(public_key_der)
        current = self.current(meter)
        if current is not None and current.public_key == hex_key:
            return current              # checked when it was stored (and no crypto library loaded at every start)
        load_public_key(public_key_der)          # refuse anything that is not an EC key before storing it
        now = time.time() if now is None else now
        with self._db.tx():
            current = self.current(meter)
            if current is not None and current.public_key == hex_key:
                return current
            if current is not None:
                self._db.write("UPDATE meter_keys SET retired_at = ? WHERE id = ?", (now, current.id))
            written = self._db.write(
                "INSERT INTO meter_keys (meter, evse_id, connector_id, serial, public_key, installed_at) "
                f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (meter, evse_id, connector_id, serial, hex_key, now))
        return _key(written.rows[0])

    def current(self, meter: str) -> MeterKey | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM meter_keys WHERE meter = ? AND retired_at IS NULL", (meter,))
        return _key(rows[0]) if rows else None

    def all_current(self) -> list[MeterKey]:
        """The current key of every meter, by EVSE / connector."""
        rows = self._db.query(f"SELECT {_COLUMNS} FROM meter_keys WHERE retired_at IS NULL "
                              "ORDER BY evse_id, connector_id, meter")
        return [_key(r) for r in rows]

    def history(self, meter: str | None = None) -> list[MeterKey]:
        """Every key ever registered (of one meter), oldest first."""
        if meter is None:
            rows = self._db.query(f"SELECT {_COLUMNS} FROM meter_keys ORDER BY id")
        else:
            rows = self._db.query(f"SELECT {_COLUMNS} FROM meter_keys WHERE meter = ? ORDER BY id", (meter,))
        return [_key(r) for r in rows]

    def get(self, key_id: int) -> MeterKey | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM meter_keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None
