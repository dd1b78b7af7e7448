"""The queue behind ``client.messages`` (mqttquic/message_queue.py), without sockets:
QoS 0 dropped and counted when full, QoS 1/2 never dropped and acknowledged when taken."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mqttquic.message import Message
from mqttquic.message_queue import MessageQueue, Messages


def _message(qos: int, acks: list[str], name: str) -> Message:
    return Message(f"t/{name}", b"", qos, False, {}, 0, (lambda: acks.append(name)) if qos else None)


async def test_qos0_beyond_the_bound_is_dropped_and_counted_qos1_is_held() -> None:
    queue = MessageQueue(2, logging.getLogger("test"))
    acks: list[str] = []
    for name, qos in (("a", 0), ("b", 1), ("c", 0), ("d", 1)):
        queue.put(_message(qos, acks, name))
    assert queue.qsize() == 3 and queue.dropped == 1  # "c" dropped, "d" held unacknowledged
    taken = []
    queue.close()
    async for message in Messages(queue):
        taken.append(message.topic)
    assert taken == ["t/a", "t/b", "t/d"]
    assert acks == ["b", "d"]  # acknowledged as the iterator took them, not before


async def test_failure_and_reopen() -> None:
    queue = MessageQueue(0, logging.getLogger("test"))
    queue.close()
    queue.reopen()  # connected again: the old end marker must not end new iterators
    queue.put(_message(0, [], "x"))
    queue.fail(ConnectionError("for good"))
    iterator = Messages(queue)()
    assert (await asyncio.wait_for(iterator.__anext__(), 1)).topic == "t/x"
    with pytest.raises(ConnectionError, match="for good"):
        await asyncio.wait_for(iterator.__anext__(), 1)
