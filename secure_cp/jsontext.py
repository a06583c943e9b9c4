"""Compact JSON text with exact decimals, at the speed of the C encoder.

OCPP numbers are parsed as ``decimal.Decimal`` so that "2935.600" stays "2935.600" on its way out (signed meter
data breaks otherwise). The stdlib encoder cannot write a number's text verbatim, so each Decimal is first written
as a string wrapped in a per-process random marker, and the quoted markers are then removed, leaving the bare
number text. No input can forge the marker: it is random per process and contains control characters that JSON
always escapes.
"""
from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any, Callable

_MARK = "\x02" + secrets.token_hex(8) + "\x03"
_MARK_JSON = json.dumps(_MARK)[1:-1]                      # how the marker looks inside encoded text
_OPEN, _CLOSE = '"' + _MARK_JSON, _MARK_JSON + '"'         # a marked number in encoded text: _OPEN text _CLOSE


def decimal_text(value: Decimal) -> str:
    """Plain notation keeps the text a meter or CSMS sent ("2935.600", "0.0000001"); exponents stay exponents."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    text = str(value)
    if "E" not in text:        # the common case: str() is already the plain, exact text
        return text
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -40 <= exponent <= 0:
        return format(value, "f")
    return str(value)


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        text = str(value)
        if "E" in text or not value.is_finite():   # not the plain text of a number: decimal_text decides
            text = decimal_text(value)
        return _MARK + text + _MARK
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _bare(text: str) -> str:
    """Encoded text with every marked number unquoted (str.replace: no Python call per number)."""
    return text.replace(_OPEN, "").replace(_CLOSE, "")


# Made once: json.dumps() with any option builds a new encoder on every call.
_UTF8 = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ASCII = json.JSONEncoder(default=_default, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


def dumps(value: Any) -> str:
    """Compact JSON (no spaces, UTF-8 text); Decimal as exact number text; NaN / infinity raise ValueError.

    A string holding a lone surrogate cannot be sent as UTF-8: then the whole text is written with \\u escapes,
    which is valid JSON and decodes to the same value.
    """
    text = _UTF8(value)
    if _OPEN in text:
        text = _bare(text)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _bare(_ASCII(value))
    return text


def loads_with(decoder: json.JSONDecoder) -> Callable[[str], Any]:
    """``decoder.decode``, with the common text (one JSON value, no whitespace around it) read by the decoder's C
    scanner directly: ``decode`` is a Python wrapper that matches whitespace on both sides first. Any other text,
    and every error with its message, is ``decode``'s own."""
    scan, decode = decoder.scan_once, decoder.decode

    def loads(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:   # no JSON value right at the start (whitespace, or nothing)
            return decode(text)
        if end != len(text):    # whitespace or more text after the value
            return decode(text)
        return value
    return loads
