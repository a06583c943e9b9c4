"""Secrets never reach a log: OCPP frames are redacted before they are logged or shown in the simulator."""
from __future__ import annotations

import json
import re

SECRET_KEYS = frozenset({"AuthorizationKey", "BasicAuthPassword"})   # redact_frame tests each by name
_FIELDS = ("value", "password")
#: Secret fields of a 2.0.1 NetworkConnectionProfileType (SetNetworkProfile connectionData, Part 2 §2.3 / §2.54).
PROFILE_SECRETS = {"apn": frozenset({"apnPassword", "simPin"}), "vpn": frozenset({"password", "key"})}


def redact_frame(text: str) -> str:
    """Replace the values of secret configuration keys in a ChangeConfiguration / SetVariables frame, and the APN /
    VPN secrets of a SetNetworkProfile frame."""
    # every frame passes here: three substring tests, no generator (SECRET_KEYS spelled out)
    if "AuthorizationKey" not in text and "BasicAuthPassword" not in text and "connectionData" not in text:
        return text
    try:
        frame = json.loads(text)
    except ValueError:
        return re.sub(r'"(value|password|apnPassword|simPin|key)"\s*:\s*("[^"]*"|-?\d+)', r'"\1":"***"', text)

    def scrub(obj):
        if isinstance(obj, dict):
            profile = obj.get("connectionData")
            if isinstance(profile, dict):
                obj = {**obj, "connectionData": {
                    k: ({f: ("***" if f in PROFILE_SECRETS[k] else x) for f, x in v.items()}
                        if k in PROFILE_SECRETS and isinstance(v, dict) else v) for k, v in profile.items()}}
            secret = obj.get("key") in SECRET_KEYS or \
                (isinstance(obj.get("variable"), dict) and obj["variable"].get("name") in SECRET_KEYS)
            return {k: ("***" if secret and k in ("value", "attributeValue") else scrub(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [scrub(x) for x in obj]
        return obj
    return json.dumps(scrub(frame), separators=(",", ":"))
