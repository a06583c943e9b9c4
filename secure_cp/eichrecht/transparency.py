"""S.A.F.E. transparency-software XML files (the ``values`` container), read and written.

::

    <?xml version="1.0" encoding="UTF-8"?>
    <values>
      <value transactionId="1" context="Transaction.Begin">
        <signedData format="OCMF" encoding="plain">OCMF|{...}|{...}</signedData>
        <publicKey encoding="hex">3059...</publicKey>
      </value>
    </values>

``transactionId`` pairs the begin and end records of one transaction; ``publicKey`` is optional (the user then
enters the key). The record text must have no white space around it. Reading refuses DTDs and entities (no
entity expansion, no external resources): such files are never produced by the transparency software.
"""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterable
from xml.sax.saxutils import escape, quoteattr

__all__ = ["TransparencyEntry", "TransparencyError", "parse_transparency_xml", "write_transparency_xml",
           "looks_like_xml"]


class TransparencyError(ValueError):
    """The XML file is not a readable transparency file; the message says why."""


@dataclass(frozen=True)
class TransparencyEntry:
    """One ``<value>``: the record text, its public key (hex DER, or None), and the pairing attributes."""
    signed_data: str
    public_key: str | None = None
    transaction_id: str | None = None
    context: str | None = None
    format: str = "OCMF"


def looks_like_xml(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("<")


_FORBIDDEN = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def _decode(text: str, encoding: str, what: str) -> str:
    if encoding in ("plain", ""):
        return text
    try:
        if encoding == "hex":
            return bytes.fromhex(text).decode("utf-8")
        if encoding == "base64":
            return base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise TransparencyError(f"{what}: not valid {encoding}: {exc}") from None
    raise TransparencyError(f"{what}: unknown encoding {encoding!r} (plain, hex or base64)")


def _public_key_hex(text: str, encoding: str, what: str) -> str:
    compact = "".join(text.split())
    if encoding in ("hex", "plain", ""):
        return compact
    if encoding == "base64":
        try:
            return base64.b64decode(compact, validate=True).hex().upper()
        except ValueError as exc:
            raise TransparencyError(f"{what}: not valid base64: {exc}") from None
    raise TransparencyError(f"{what}: unknown encoding {encoding!r} (hex, plain or base64)")


def parse_transparency_xml(text: str) -> list[TransparencyEntry]:
    """The entries of a transparency file, in file order; TransparencyError for anything unreadable."""
    if _FORBIDDEN.search(text):
        raise TransparencyError("the file declares a DTD or entities: refused (transparency files have none)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TransparencyError(f"not well-formed XML: {exc}") from None
    if root.tag != "values":
        raise TransparencyError(f"root element is <{root.tag}>, expected <values>")
    entries: list[TransparencyEntry] = []
    for i, value in enumerate(root, 1):
        what = f"<value> #{i}"
        if value.tag != "value":
            raise TransparencyError(f"{what}: unexpected element <{value.tag}> inside <values>")
        data = value.find("signedData")
        if data is None or not (data.text or "").strip():
            raise TransparencyError(f"{what}: <signedData> is missing or empty")
        fmt = data.get("format", "OCMF")
        # the white space outside "OCMF|...|...}" is not signed: strip what a pretty-printer may have added
        signed = _decode((data.text or "").strip(), data.get("encoding", "plain"), f"{what} <signedData>")
        key_el = value.find("publicKey")
        key = None
        if key_el is not None and (key_el.text or "").strip():
            key = _public_key_hex(key_el.text or "", key_el.get("encoding", "plain"), f"{what} <publicKey>")
        entries.append(TransparencyEntry(signed.strip(), key, value.get("transactionId"), value.get("context"), fmt))
    if not entries:
        raise TransparencyError("<values> holds no <value>")
    return entries


def write_transparency_xml(entries: Iterable[TransparencyEntry]) -> str:
    """The transparency file text (UTF-8, LF line ends), the record text exactly as stored."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<values>"]
    for e in entries:
        attrs = ""
        if e.transaction_id is not None:
            attrs += f" transactionId={quoteattr(str(e.transaction_id))}"
        if e.context is not None:
            attrs += f" context={quoteattr(e.context)}"
        lines.append(f"  <value{attrs}>")
        lines.append(f'    <signedData format={quoteattr(e.format)} encoding="plain">{escape(e.signed_data)}'
                     "</signedData>")
        if e.public_key is not None:
            lines.append(f'    <publicKey encoding="hex">{escape(e.public_key)}</publicKey>')
        lines.append("  </value>")
    lines.append("</values>")
    return "\n".join(lines) + "\n"
