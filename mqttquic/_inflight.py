"""The application's waits for acknowledgements: one table per MQTT session.

A ``publish()`` of QoS 1/2, a ``subscribe()`` or an ``unsubscribe()`` waits on a
future filed here under ``(channel, packet id)``; the transport resolves it from the
session's events (PUBACK, PUBCOMP, SUBACK, UNSUBACK) or fails it when its channel or
connection ends. The MQTT state of the same flows lives in the sans-I/O ``Session``;
this table holds only the futures. A persistent session hands both to its next
connection (``Transport.carry_over()``), so the waits it keeps continue there instead
of being copied between tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .session import Session

__all__ = ["Carry", "InFlight", "Key"]

# (channel, packet id): a QUIC stream id, or 0 for TCP's only channel.
Key = tuple[int, int]


class InFlight:
    """Futures waiting for acknowledgements, by ``(channel, packet id)``."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: dict[Key, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def __contains__(self, key: object) -> bool:
        return key in self._futures

    def wait(self, channel: int, packet_id: int) -> asyncio.Future[Any]:
        """A future for the acknowledgement of ``packet_id`` on ``channel``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[channel, packet_id] = future
        return future

    def resolve(self, channel: int, packet_id: int, value: Any) -> None:
        """The acknowledgement came: its reason code(s) to the waiter, if any waits."""
        future = self._futures.pop((channel, packet_id), None)
        if future is not None and not future.done():
            future.set_result(value)

    def fail_channel(self, channel: int, exc: BaseException) -> int:
        """``channel`` ended: its waiters get ``exc``; how many there were."""
        keys = [key for key in self._futures if key[0] == channel]
        for key in keys:
            _fail(self._futures.pop(key), exc)
        return len(keys)

    def fail(self, exc: BaseException, keep: Callable[[Key], bool] = lambda key: False) -> None:
        """The connection ended: every waiter gets ``exc``, except those ``keep`` names,
        which stay filed for the session's next connection."""
        for key in [key for key in self._futures if not keep(key)]:
            _fail(self._futures.pop(key), exc)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@dataclass(frozen=True, slots=True)
class Carry:
    """A persistent session's unfinished QoS 1/2 flows, from one connection to the next:
    their MQTT state and the waits for them."""

    session: Session
    in_flight: InFlight

    def drop(self, exc: BaseException) -> None:
        """The flows cannot continue (the session ended, or moved to TCP+TLS)."""
        self.in_flight.fail(exc)
