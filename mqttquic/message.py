"""The application message handed to users."""

from __future__ import annotations

import json
from typing import Any

from ._wire import payload_bytes
from .topics import topic_matches

__all__ = ["Message", "payload_bytes"]


class Message:
    """An application message received from the broker.

    ``stream_id`` is the QUIC stream it arrived on (the data stream of the
    subscription), or 0 on TCP and on the control stream.
    """

    __slots__ = ("topic", "payload", "qos", "retain", "properties", "stream_id")

    def __init__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                 properties: dict[str, Any] | None = None, stream_id: int = 0) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties or {}
        self.stream_id = stream_id

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
