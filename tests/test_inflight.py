"""The in-flight table (mqttquic/_inflight.py), without sockets: one table per session,
carried to the next connection of a persistent session."""

from __future__ import annotations

import pytest

from mqttquic._inflight import Carry, InFlight
from mqttquic.codec import Connect
from mqttquic.errors import ConnectError
from mqttquic.session import Session


async def test_waits_are_resolved_by_channel_and_packet_id() -> None:
    table = InFlight()
    on_control, on_stream = table.wait(0, 1), table.wait(4, 1)  # same id, other channel
    table.resolve(4, 1, 0x10)
    assert on_stream.result() == 0x10 and not on_control.done()
    table.resolve(4, 1, 0)  # a late duplicate ack: nobody waits, nothing happens
    assert len(table) == 1 and (0, 1) in table


async def test_a_closed_channel_fails_its_waits_only() -> None:
    table = InFlight()
    a, b, other = table.wait(4, 1), table.wait(4, 2), table.wait(8, 1)
    assert table.fail_channel(4, ConnectError("stream 4 closed")) == 2
    for future in (a, b):
        with pytest.raises(ConnectError, match="stream 4"):
            future.result()
    assert not other.done()


async def test_a_lost_connection_keeps_what_the_next_one_continues() -> None:
    table = InFlight()
    kept, failed = table.wait(0, 7), table.wait(4, 1)
    table.fail(ConnectError("lost"), keep=lambda key: key[0] == 0)
    assert not kept.done() and isinstance(failed.exception(), ConnectError)
    carry = Carry(Session(Connect("dev")), table)
    carry.drop(ConnectError("moved to TCP+TLS"))
    assert isinstance(kept.exception(), ConnectError) and len(table) == 0
