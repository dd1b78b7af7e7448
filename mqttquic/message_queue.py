"""Received messages on their way to ``async for message in client.messages``.

Messages wait here from the moment of connecting until an iterator takes them, so none
is lost between ``subscribe()`` and the start of iteration. The queue is bounded for
QoS 0 only: a QoS 0 message beyond ``max_size`` is dropped and counted, while a QoS
1/2 message is always queued, and its acknowledgement waits until an iterator takes it
(``Message._acknowledge``), so the broker's in-flight window, not our memory, bounds
what a slow reader is sent. ``changes.ChangeFeed`` is the same for connection changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from .message import Message

__all__ = ["MessageQueue", "Messages"]

_CLOSED = object()  # ends iterators


class MessageQueue:
    """One queue that every iterator of one client shares."""

    def __init__(self, max_size: int, logger: logging.Logger) -> None:
        self.max_size = max_size  # 0: unbounded
        self.dropped = 0  # QoS 0 messages a full queue could not take
        self.iterating = False  # an iterator has started: messages are kept for it
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._pushing_back = False
        self._logger = logger

    def qsize(self) -> int:
        return self._items.qsize()

    def put(self, message: Message) -> None:
        """Queue ``message``; a QoS 0 message that finds the queue full is dropped."""
        if not self.max_size or self._items.qsize() < self.max_size:
            self._pushing_back = False
            self._items.put_nowait(message)
            return
        if not message.qos:
            # QoS 0 promised nothing: dropped, and counted (get_stats).
            self.dropped += 1
            if self.dropped % 1000 == 1:
                self._logger.warning(
                    "message queue full (%d): QoS 0 message dropped (%d so far); iterate"
                    " client.messages faster or raise max_queued_messages", self.max_size,
                    self.dropped)
            return
        # QoS 1/2 is never dropped: it waits unacknowledged, and the broker sends no more
        # than its in-flight window until the application takes some.
        if not self._pushing_back:
            self._pushing_back = True
            self._logger.info("message queue full (%d): holding acknowledgements, the broker"
                              " waits", self.max_size)
        self._items.put_nowait(message)

    def close(self) -> None:
        """Iterators end once they have taken what is queued (disconnect())."""
        self._items.put_nowait(_CLOSED)

    def fail(self, exc: BaseException) -> None:
        """Iterators raise ``exc`` once they have taken what is queued."""
        self._items.put_nowait(exc)

    def reopen(self) -> None:
        """The client connects again after close(): new iterators must not end on the
        old end marker."""
        kept = []
        while not self._items.empty():
            item = self._items.get_nowait()
            if item is not _CLOSED:
                kept.append(item)
        for item in kept:
            self._items.put_nowait(item)

    async def iterate(self) -> AsyncIterator[Message]:
        self.iterating = True
        while True:
            item = await self._items.get()
            if item is _CLOSED:
                return
            if isinstance(item, BaseException):
                raise item
            item._acknowledge()  # taken: the broker may send the next one
            yield item


class Messages:
    """``client.messages``: async-iterable (aiomqtt's spelling), and callable as
    ``client.messages()`` (the reference design's)."""

    __slots__ = ("_queue",)

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._queue.iterate()

    def __call__(self) -> AsyncIterator[Message]:
        return self._queue.iterate()
