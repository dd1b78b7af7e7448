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
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._channel import PACKET_ID_NOT_FOUND
from .session import Session

_logger = logging.getLogger("mqttquic.client")

__all__ = ["Carry", "InFlight", "Key", "StoredFlow", "release_when_recorded"]

# (channel, packet id): a QUIC stream id, or 0 for TCP's only channel.
Key = tuple[int, int]


@dataclass(slots=True)
class StoredFlow:
    """How a message from the outbox is sent (``forwarding.StoreAndForward``).

    ``packet_id``: its own, kept on a persistent session's control channel (a QUIC
    data stream numbers its own); ``dup``: an earlier run may have sent it;
    ``released``: its PUBREC came (QoS 2, recorded by ``received``), so the broker
    owns it and PUBREL, not PUBLISH, goes again; ``received``: called when its PUBREC
    comes, to record that before PUBREL goes (a restart or reconnect in between then
    sends PUBREL, and the broker, which forgets the message at PUBREL, does not take it
    twice). Mutable: a publish sent again after a cut-off sees what happened."""

    packet_id: int
    dup: bool = False
    released: bool = False
    received: Callable[[], Awaitable[None]] | None = None

    def gone_with_session(self, session_present: bool, topic: str) -> bool:
        """A released flow whose broker no longer has the session: the broker had
        taken the message (PUBREC), and nothing is left to send."""
        if self.released and not session_present:
            _logger.info("stored QoS 2 message %d to %r: the broker had taken it (PUBREC) and"
                         " no longer has the session; nothing to release", self.packet_id, topic)
            return True
        return False

    def succeeded(self, reason_code: int) -> bool:
        """Whether the acknowledgement's reason code ends the flow well: a success, or
        "packet identifier not found" for the PUBREL of a flow an earlier run released
        (the broker had completed it)."""
        return reason_code < 0x80 or (self.released and reason_code == PACKET_ID_NOT_FOUND)


class InFlight:
    """Futures waiting for acknowledgements, by ``(channel, packet id)``, and the
    PUBREC callbacks of stored QoS 2 flows (``StoredFlow.received``)."""

    __slots__ = ("_futures", "received")

    def __init__(self) -> None:
        self._futures: dict[Key, asyncio.Future[Any]] = {}
        self.received: dict[Key, Callable[[], Awaitable[None]]] = {}

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
        self.received.pop((channel, packet_id), None)
        future = self._futures.pop((channel, packet_id), None)
        if future is not None and not future.done():
            future.set_result(value)

    def fail_channel(self, channel: int, exc: BaseException) -> int:
        """``channel`` ended: its waiters get ``exc``; how many there were."""
        keys = [key for key in self._futures if key[0] == channel]
        for key in keys:
            self.received.pop(key, None)
            _fail(self._futures.pop(key), exc)
        return len(keys)

    def fail(self, exc: BaseException, keep: Callable[[Key], bool] = lambda key: False) -> None:
        """The connection ended: every waiter gets ``exc``, except those ``keep`` names,
        which stay filed for the session's next connection."""
        for key in [key for key in self._futures if not keep(key)]:
            self.received.pop(key, None)
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


_releasing: set[asyncio.Task[None]] = set()  # kept until done (the loop holds tasks weakly)


def release_when_recorded(in_flight: InFlight, channel: int, packet_id: int,
                          release: Callable[[], None], logger: logging.Logger) -> None:
    """PUBREC came for a stored QoS 2 flow: ``release()`` (send PUBREL) once its
    ``StoredFlow.received`` has recorded it; at once for a flow with none. When the
    record fails, PUBREL is not sent: the next connection sends the PUBLISH again
    (DUP), the broker answers PUBREC again, and the record is tried again."""
    received = in_flight.received.get((channel, packet_id))
    if received is None:
        release()
        return

    async def record_then_release() -> None:
        try:
            await received()
        except Exception as exc:  # noqa: BLE001 - logged; the flow resumes later
            logger.error("recording the PUBREC of packet %d failed (%s): PUBREL waits for"
                         " the next connection", packet_id, exc)
            return
        release()

    task = asyncio.ensure_future(record_then_release())
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)
