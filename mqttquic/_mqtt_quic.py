"""MQTT over QUIC as EMQX defines it: the words the client and the gateway share.

The ALPN, the control stream's id, the application error codes with which a server
resets streams and closes connections, and the three things both ends do to aioquic
streams: send (or learn that the stream is gone), end a stream in both directions, and
wait until what was sent has been acknowledged (aioquic's send buffer, read through
``_aioquic``).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from typing import Any

from ._aioquic import unacknowledged_bytes

__all__ = ["ALPN", "CONTROL_STREAM", "AppError", "end_stream", "send_or_drop",
           "until_acknowledged"]

ALPN = "mqtt"
# The first client-initiated bidirectional stream: CONNECT, PINGREQ, DISCONNECT.
CONTROL_STREAM = 0


class AppError(enum.IntEnum):
    """QUIC application error codes of a server (ours: the gateway)."""

    TOO_MANY_STREAMS = 0x101  # a data stream refused for good: clients do not retry it
    BUFFER_FULL = 0x102
    UPSTREAM = 0x103
    PACKET_TOO_LARGE = 0x104
    CONNECT_TIMEOUT = 0x105
    TOO_MANY_CONNECTIONS = 0x106


# What aioquic raises for a stream that is closed, reset or not ours to write.
_STREAM_GONE = (AssertionError, ValueError, RuntimeError)


def send_or_drop(quic: Any, stream_id: int, data: bytes, end: bool = False) -> bool:
    """Queue ``data`` on a stream; False (nothing sent) when the stream can no longer
    carry it (it ended, or was reset)."""
    try:
        quic.send_stream_data(stream_id, data, end_stream=end)
    except _STREAM_GONE:
        return False
    return True


def end_stream(quic: Any, stream_id: int, code: int) -> bool:
    """End both directions of a stream with ``code`` (RESET_STREAM and STOP_SENDING);
    False when it had ended already."""
    try:
        quic.reset_stream(stream_id, code)
        quic.stop_stream(stream_id, code)
    except _STREAM_GONE:
        return False
    return True


async def until_acknowledged(quic: Any, stream_ids: Iterable[int], *, at_most: int = 0,
                             within: float, give_up: Callable[[], bool] = lambda: False) -> None:
    """Wait until no stream of ``stream_ids`` holds more than ``at_most`` unacknowledged
    bytes, at most ``within`` seconds, or until ``give_up()``. aioquic has no event for
    it: polled every 5 ms."""
    streams = list(stream_ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (any(unacknowledged_bytes(quic, s) > at_most for s in streams) and not give_up()
           and loop.time() < deadline):
        await asyncio.sleep(0.005)
