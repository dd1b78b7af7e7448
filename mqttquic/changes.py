"""What happened to a client's connection, for callbacks and for ``async for``.

``Client(on_connect=..., on_disconnect=...)`` is paho's habit; ``async for change in
client.connection_changes()`` and ``await client.wait_connected()`` are asyncio's. Both
see the same :class:`ConnectionChange` objects, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .config import TransportType

__all__ = ["ConnectionChange", "ChangeFeed", "UserCallbacks"]


@dataclass(frozen=True)
class ConnectionChange:
    """One turn in the connection's life.

    ``state``: ``"connected"`` (first connect, reconnect, or a move between
    transports), ``"lost"`` (the client reconnects by itself), ``"failed"`` (it
    will not: ``reason`` says why) or ``"closed"`` (``disconnect()`` was called).
    """

    state: str
    transport: TransportType | None = None
    session_present: bool = False  # the broker kept a session for this client id
    reconnected: bool = False  # connected again after a loss
    moved: bool = False  # a planned move, TCP+TLS -> QUIC: no message is lost
    fallback: bool = False  # on TCP+TLS although QUIC was wanted (transport="auto")
    reason: BaseException | None = None

    @property
    def is_connected(self) -> bool:
        return self.state == "connected"


class UserCallbacks:
    """Calls the user's callbacks: a coroutine's task is kept until it ends (a task with
    no reference may be collected mid-flight), and an exception is logged, not raised
    into the client."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.tasks: set[asyncio.Task[Any]] = set()

    def call(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception:
            self.logger.exception("callback %s failed", getattr(callback, "__name__", callback))
            return
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.logger.error("callback task failed", exc_info=task.exception())


class ChangeFeed:
    """Fans each change out to every ``connection_changes()`` iterator, and remembers
    the last one for ``wait_connected``."""

    def __init__(self) -> None:
        self.last: ConnectionChange | None = None
        self._queues: list[asyncio.Queue[ConnectionChange]] = []
        self._changed = asyncio.Event()

    def publish(self, change: ConnectionChange) -> None:
        self.last = change
        for queue in self._queues:
            queue.put_nowait(change)
        self._changed.set()
        self._changed = asyncio.Event()

    async def changes(self) -> AsyncIterator[ConnectionChange]:
        queue: asyncio.Queue[ConnectionChange] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                change = await queue.get()
                yield change
        finally:
            self._queues.remove(queue)

    async def wait(self, predicate: Callable[[ConnectionChange | None], bool]) -> None:
        while not predicate(self.last):
            await self._changed.wait()
