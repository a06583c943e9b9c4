"""A minimal OCPP-J client for the CSMS tests: sends frames as text, reads frames back (no secure-cp code)."""
from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection


class RawStation:
    def __init__(self, ws: ClientConnection, ids: Iterator[int] | None = None, prefix: str = "m") -> None:
        self.ws = ws
        self._ids = ids if ids is not None else itertools.count(1)
        self._prefix = prefix

    def next_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    async def send_call(self, action: str, payload: Any, unique_id: str | None = None) -> str:
        unique_id = unique_id or self.next_id()
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        return unique_id

    async def recv(self) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), 5))

    async def call(self, action: str, payload: Any) -> list[Any]:
        unique_id = await self.send_call(action, payload)
        frame = await self.recv()
        assert frame[1] == unique_id
        return frame

    async def result(self, action: str, payload: Any) -> dict[str, Any]:
        frame = await self.call(action, payload)
        assert frame[0] == 3, frame
        return frame[2]
