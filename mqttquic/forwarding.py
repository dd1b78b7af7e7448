"""Store and forward: the client's durable outbox (``ConnectionConfig(outbox=...)``) and
the task that empties it.

Every QoS 1/2 message is written to the outbox before it is sent and removed when the
broker acknowledges it, so a device that reboots or stays offline for hours loses none.
``Client.enqueue()`` returns once the message is stored; ``Client.publish()`` stores,
sends and waits as before, and a publish that runs out of time stays stored. The
delivery task sends what is stored, oldest first, a window of messages at a time on
the one connection (so each topic's order holds), whenever the client is connected; it
starts with the client and after a restart sends what an earlier run left.

File I/O runs in a worker thread (``asyncio.to_thread``), batched: the messages stored
and the acknowledgements that arrive while a write is under way go into the next
write, one transaction (one fsync with ``outbox_sync="full"``) for all of them. A
message is on disk before it is sent; its removal may trail its PUBACK by a write, and
a crash in between sends it once more (at least once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._aio import within
from ._inflight import StoredFlow
from .changes import ChangeFeed
from .config import ConnectionConfig
from .errors import MQTTQUICError, OperationTimeout, PublishFailed
from .outbox import Outbox, OutboxError, OutboxFull, StoredMessage, packet_id_of

__all__ = ["StoreAndForward"]

Send = Callable[[str, bytes, int, bool, "dict[str, Any] | None", StoredFlow], Awaitable[None]]

# Pause after a failed delivery (the connection went away: the next waits for it).
RETRY_PAUSE = 0.5
# Stored messages in flight at once: a backlog drains at this many per round trip, not
# one (the broker's Receive Maximum still bounds what is on the wire).
DELIVERY_WINDOW = 32


class StoreAndForward:
    """One client's outbox and its delivery task."""

    def __init__(self, config: ConnectionConfig, send: Send, changes: ChangeFeed,
                 logger: logging.Logger) -> None:
        assert config.outbox is not None
        self.config = config
        self.outbox = Outbox(config.outbox, sync=config.outbox_sync,
                             max_messages=config.outbox_max_messages,
                             max_bytes=config.outbox_max_bytes,
                             drop_oldest=config.outbox_drop_oldest)
        self._send = send
        self._changes = changes  # the client's connection changes: deliver while connected
        self._logger = logger
        self._wake = asyncio.Event()
        self._in_hand: set[int] = set()  # stored ids that publish() is sending itself
        self._acked: set[int] = set()  # acknowledged, their removal not yet written
        self._adds: list[tuple[Any, asyncio.Future[int]]] = []
        self._removes: list[int] = []
        self._released: list[tuple[int, asyncio.Future[int]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._delivering: dict[int, asyncio.Task[bool]] = {}  # stored id -> its delivery
        self._suspects: set[int] = set()  # cut off too often in a window: sent alone next
        self.sent = 0  # delivered from the outbox and acknowledged
        self.failed = 0  # refused by the broker for good (PublishFailed), logged

    # --- what the client calls ------------------------------------------------------------

    async def store(self, topic: str, payload: bytes, qos: int, retain: bool,
                    properties: dict[str, Any] | None) -> int:
        """Write the message (durably, as outbox_sync says); the delivery task sends it."""
        message_id = await self._write(topic, payload, qos, retain, properties)
        self._wake.set()
        return message_id

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                      properties: dict[str, Any] | None, timeout: float) -> None:
        """``Client.publish()`` with an outbox: stored, sent, removed when acknowledged.
        Past ``timeout`` the message stays stored and OperationTimeout says so."""
        message_id = await self._write(topic, payload, qos, retain, properties)
        self._in_hand.add(message_id)
        try:
            await within(self._send(topic, payload, qos, retain, properties,
                                    self._flow(message_id, qos)), timeout,
                         f"publish to {topic!r} (QoS {qos})")
        except BaseException as exc:
            self._in_hand.discard(message_id)
            self._wake.set()  # not acknowledged: the delivery task takes it over
            if isinstance(exc, OperationTimeout):
                raise OperationTimeout(f"{exc}; it stays in the outbox ({self.config.outbox})"
                                       " and is delivered when the connection allows") from None
            raise
        self._in_hand.discard(message_id)
        self._acknowledged(message_id)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._deliver())

    async def stop(self) -> None:
        task, self._task = self._task, None
        tasks = [*self._delivering.values(), *([task] if task is not None else [])]
        for each in tasks:
            each.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        # As of the last write (no query on the event loop), less what is acknowledged
        # and gone with the next write.
        stored, stored_bytes = self.outbox.count - len(self._acked), self.outbox.size
        return {"outbox_stored": stored, "outbox_bytes": stored_bytes, "outbox_sent": self.sent,
                "outbox_dropped": self.outbox.dropped, "outbox_failed": self.failed}

    # --- the delivery task ------------------------------------------------------------------

    async def _deliver(self) -> None:
        """Send what is stored, oldest first, up to DELIVERY_WINDOW at a time on the one
        connection (so each topic keeps its order, as MQTT orders one connection's
        publishes). A delivery that fails stops new ones; the rest are read again
        after a pause."""
        window = asyncio.Semaphore(DELIVERY_WINDOW)
        failed = asyncio.Event()
        while True:
            self._wake.clear()
            batch = [m for m in await asyncio.to_thread(self.outbox.pending)
                     if m.id not in self._in_hand and m.id not in self._acked
                     and m.id not in self._delivering]
            if not batch:
                await self._wake.wait()
                continue
            if await self._deliver_suspects(batch):
                for message in batch:
                    await self._connected()
                    await window.acquire()
                    if failed.is_set():
                        window.release()
                        break
                    self._start_delivery(message, window, failed)
            else:
                failed.set()
            if failed.is_set():
                await asyncio.gather(*self._delivering.values(), return_exceptions=True)
                await asyncio.sleep(RETRY_PAUSE)
                failed.clear()  # read again: publish() may have taken some meanwhile

    async def _connected(self) -> None:
        await self._changes.wait(lambda change: change is not None and change.is_connected)

    async def _deliver_suspects(self, batch: list[StoredMessage]) -> bool:
        """Send alone, one by one, the messages of ``batch`` that were in flight on
        ``max_publish_attempts`` connections that died: the window's other messages
        were cut off with them, so an outage cannot be told from a publish the broker
        disconnects for until each goes alone. False when one could not be sent."""
        for message in [m for m in batch if m.id in self._suspects]:
            batch.remove(message)
            await self._connected()
            if not await self._deliver_one(message, alone=True):
                return False
            self._suspects.discard(message.id)
        return True

    def _start_delivery(self, message: StoredMessage, window: asyncio.Semaphore,
                        failed: asyncio.Event) -> None:
        task = asyncio.ensure_future(self._deliver_one(message))
        self._delivering[message.id] = task

        def done(task: asyncio.Task[bool]) -> None:
            del self._delivering[message.id]
            window.release()
            error = None if task.cancelled() else task.exception()
            if error is not None:
                self._logger.error("outbox delivery of message %d failed: %r", message.id,
                                   error)
            if task.cancelled() or error is not None or not task.result():
                failed.set()
                self._wake.set()
        task.add_done_callback(done)

    async def _deliver_one(self, message: StoredMessage, alone: bool = False) -> bool:
        """Send one stored message; True when it left the outbox. ``alone``: nothing
        else of the outbox is in flight, so a connection that dies under it is taken
        for its doing."""
        try:
            flow = self._flow(message.id, message.qos, released=message.released,
                              dup=message.id <= self.outbox.earlier_run_last_id)
            await within(self._send(message.topic, message.payload, message.qos, message.retain,
                                    message.properties, flow), self.config.operation_timeout,
                         f"outbox delivery to {message.topic!r}")
        except PublishFailed as exc:
            if exc.reason_code is None and not alone:
                self._logger.warning("outbox message %d: %s; sending it alone next",
                                     message.id, exc.reason)
                self._suspects.add(message.id)
                return False
            # The broker will not take it, now or later (a refusal code, or a poison
            # publish): kept no longer, and said so.
            self.failed += 1
            self._logger.error("outbox message %d to %r refused for good, removed: %s",
                               message.id, message.topic, exc)
        except MQTTQUICError as exc:
            self._logger.info("outbox delivery to %r waits: %s", message.topic, exc)
            return False
        else:
            self.sent += 1
        self._acknowledged(message.id)
        return True

    def _flow(self, message_id: int, qos: int, *, released: bool = False,
              dup: bool = False) -> StoredFlow:
        """How the stored message ``message_id`` is sent: its own packet id (kept by a
        persistent session after a restart), DUP when an earlier run may have sent it;
        with a persistent session a QoS 2 PUBREC is recorded before PUBREL goes."""
        flow = StoredFlow(packet_id_of(message_id), dup=dup, released=released)
        if qos == 2 and not self.config.clean_start:
            async def received() -> None:
                await self._write_released(message_id)
                flow.released = True
            flow.received = received
        return flow

    # --- batched writes -----------------------------------------------------------------------

    async def _write(self, *message: Any) -> int:
        """Store one message in the next batched write; its id once it is on disk."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._adds.append((message, done))
        self._kick()
        return await done

    async def _write_released(self, message_id: int) -> None:
        """Record in the next batched write that the message's PUBREC came."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._released.append((message_id, done))
        self._kick()
        await done

    def _acknowledged(self, message_id: int) -> None:
        self._acked.add(message_id)
        self._removes.append(message_id)
        self._kick()

    def _kick(self) -> None:
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_batches())

    async def _write_batches(self) -> None:
        try:
            while self._adds or self._removes or self._released:
                adds, self._adds = self._adds, []
                removes, self._removes = self._removes, []
                released, self._released = self._released, []
                try:
                    results = await asyncio.to_thread(
                        self.outbox.write, [message for message, _ in adds], removes,
                        [message_id for message_id, _ in released])
                except Exception as exc:  # noqa: BLE001 - each waiting store() gets it
                    failed: BaseException = OutboxError(f"outbox {self.config.outbox}: {exc}")
                    for _, done in adds + released:
                        if not done.done():
                            done.set_exception(failed)
                    self._logger.error("outbox write failed: %s", exc)
                    self._removes[:0] = removes  # tried again with the next write
                    return
                self._acked.difference_update(removes)
                for message_id, done in released:
                    if not done.done():
                        done.set_result(message_id)
                for (_, done), result in zip(adds, results):
                    if done.done():
                        continue
                    if isinstance(result, OutboxFull):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._writing = None
