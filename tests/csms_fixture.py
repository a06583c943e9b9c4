"""pytest fixtures providing a started local CSMS (secure_cp.sim.csms.Csms) on 127.0.0.1 with an ephemeral port.

Registered for every test by conftest.py (``pytest_plugins = ["csms_fixture"]``); import its constants from a test module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from secure_cp.sim.csms import Csms

#: The station identity and password (AuthorizationKey, 16 bytes as a hex-digit string) ``csms_auth`` accepts.
AUTH_IDENTITY = "CP-AUTH"
AUTH_PASSWORD = b"0123456789abcdef"


@pytest_asyncio.fixture
async def csms() -> AsyncIterator[Csms]:
    """A started CSMS without authentication (security profile 0); stopped after the test."""
    async with Csms() as server:
        yield server


@pytest_asyncio.fixture
async def csms_auth() -> AsyncIterator[Csms]:
    """A started CSMS requiring HTTP Basic auth for ``AUTH_IDENTITY`` / ``AUTH_PASSWORD`` (security profile 1)."""
    async with Csms(basic_auth={AUTH_IDENTITY: AUTH_PASSWORD}) as server:
        yield server
