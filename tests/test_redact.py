"""secure_cp.redact: no secret of a frame reaches a log or the simulator's frame view (OCPP 2.0.1 A01.FR.12; the 1.6
AuthorizationKey, security whitepaper; SetNetworkProfile APN / VPN secrets, B09)."""
from __future__ import annotations

import json

import pytest

from secure_cp.redact import SECRET_KEYS, redact_frame


@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
def test_every_secret_key_is_redacted_in_1_6_and_2_0_1_frames(key: str) -> None:
    secret = "0123456789abcdef"
    change = json.dumps([2, "m1", "ChangeConfiguration", {"key": key, "value": secret}])
    setvar = json.dumps([2, "m2", "SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": key}, "attributeValue": secret}]}])
    for text in (change, setvar):
        out = redact_frame(text)
        assert secret not in out and "***" in out, out


def test_network_profile_secrets_are_redacted() -> None:
    text = json.dumps([2, "m3", "SetNetworkProfile", {"configurationSlot": 1, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://csms.example/ocpp",
        "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0",
        "apn": {"apn": "internet", "apnAuthentication": "AUTO", "apnPassword": "apn-secret", "simPin": 1234},
        "vpn": {"server": "vpn.example", "user": "u", "password": "vpn-secret", "key": "vpn-key", "type": "IPSec"}}}])
    out = redact_frame(text)
    for secret in ("apn-secret", "1234", "vpn-secret", "vpn-key"):
        assert secret not in out, out


def test_other_frames_pass_unchanged() -> None:
    text = '[2,"m4","MeterValues",{"connectorId":1,"meterValue":[]}]'
    assert redact_frame(text) is text
