"""The application message handed to users."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._wire import payload_bytes
from .topics import topic_matches

__all__ = ["Message", "payload_bytes"]


class Message:
    """An application message received from the broker.

    ``stream_id`` is the QUIC stream it arrived on (the data stream of the
    subscription), or 0 on TCP and on the control stream.
    """

    __slots__ = ("topic", "payload", "qos", "retain", "properties", "stream_id", "_ack")

    def __init__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                 properties: dict[str, Any] | None = None, stream_id: int = 0,
                 ack: Callable[[], None] | None = None) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties or {}
        self.stream_id = stream_id
        # QoS 1/2: sends its PUBACK (PUBREC, or paho's PUBCOMP) when the application has
        # taken the message; until then the broker counts it in flight and sends no more
        # than its window. Called once, by the client.
        self._ack = ack

    def _acknowledge(self) -> None:
        ack, self._ack = self._ack, None
        if ack is not None:
            ack()

    def matches(self, topic_filter: str) -> bool:
        """Whether this message's topic matches ``topic_filter`` (``+`` and ``#`` wildcards;
        a ``$`` topic only matches a filter that names its first level)."""
        return topic_matches(topic_filter, self.topic)

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, payload={self.payload!r}, qos={self.qos},"
                f" retain={self.retain}, stream_id={self.stream_id})")
