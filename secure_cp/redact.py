"""Secrets never reach a log: OCPP frames are redacted before they are logged or shown in the simulator."""
from __future__ import annotations

import json
import re

SECRET_KEYS = frozenset({"AuthorizationKey", "BasicAuthPassword"})
_FIELDS = ("value", "password")


def redact_frame(text: str) -> str:
    """Replace the values of secret configuration keys in a ChangeConfiguration / SetVariables frame."""
    if not any(k in text for k in SECRET_KEYS):
        return text
    try:
        frame = json.loads(text)
    except ValueError:
        return re.sub(r'"(value|password)"\s*:\s*"[^"]*"', r'"\1":"***"', text)

    def scrub(obj):
        if isinstance(obj, dict):
            secret = obj.get("key") in SECRET_KEYS or \
                (isinstance(obj.get("variable"), dict) and obj["variable"].get("name") in SECRET_KEYS)
            return {k: ("***" if secret and k in ("value", "attributeValue") else scrub(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [scrub(x) for x in obj]
        return obj
    return json.dumps(scrub(frame), separators=(",", ":"))
