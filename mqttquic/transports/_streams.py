"""Which QUIC stream each publish and subscription rides: a sans-I/O stream pool.

EMQX's MQTT over QUIC: the control stream carries CONNECT, PINGREQ and DISCONNECT;
in multi-stream mode each topic (or topic filter) gets a data stream of its own from
a bounded pool, and once the pool is full (or the server grants no more streams)
topics share the open ones by a stable hash. Streams are independent, so a lost
packet on one does not hold up the others.

No aioquic here: the transport says whether the server grants another stream and
hands over a function that opens one; everything else is bookkeeping, tested without
sockets in ``tests/test_streams.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

__all__ = ["NoStreamCredit", "StreamPool"]


class NoStreamCredit(Exception):
    """A new data stream is needed and the server has granted no room for it."""


class StreamPool:
    """The control stream, the data streams, and the topic each one carries.

    ``persistent`` (``clean_start`` false): EMQX data streams are clean sessions, so
    what has to survive a reconnect rides the control stream, whose session persists:
    subscriptions, and QoS 2 publishes, whose exactly-once state the broker keeps per
    session. QoS 0/1 publishes keep their own streams: a cut one is sent again.
    """

    __slots__ = ("multi_stream", "max_streams", "persistent", "control", "topics", "_by_key",
                 "_data")

    def __init__(self, *, multi_stream: bool, max_streams: int, persistent: bool) -> None:
        self.multi_stream = multi_stream
        self.max_streams = max_streams
        self.persistent = persistent
        self.control: int | None = None
        # stream id -> the topic (or filter) that opened it
        self.topics: dict[int, str] = {}
        self._by_key: dict[str, int] = {}  # topic -> the stream it rides, shared ones too
        self._data: list[int] = []

    @property
    def data_streams(self) -> list[int]:
        return list(self._data)

    # --- routing -------------------------------------------------------------------------

    def publish_key(self, topic: str, qos: int) -> str | None:
        """The key of the stream a publish rides: ``topic``, or None (control)."""
        return None if self.persistent and qos == 2 else topic

    def subscription_key(self, topic_filter: str) -> str | None:
        """The key of the stream a (un)subscription rides: the filter, or None."""
        return None if self.persistent else topic_filter

    def outlives_connection(self, channel: int) -> bool:
        """Whether flows on ``channel`` continue on the session's next connection: only
        a persistent session's control stream does (see the class docstring)."""
        return self.persistent and channel == self.control

    # --- streams -------------------------------------------------------------------------

    def known(self, key: str | None) -> int | None:
        """The stream ``key`` rides already (the control stream for None, or in
        single-stream mode), or None when it needs ``stream_for``: the fast path of
        every publish after a topic's first."""
        if not self.multi_stream or key is None:
            return self.control
        return self._by_key.get(key)

    def stream_for(self, key: str | None, *, credit: bool, open_stream: Callable[[], int]) -> int:
        """The stream for ``key`` (None: the control stream): its own while the pool has
        room and ``credit`` says the server grants one more (``open_stream()`` opens
        it), then shared by hash. NoStreamCredit when a new stream is needed, there is
        no credit, and no data stream is open to share."""
        assert self.control is not None, "no control stream yet"
        if not self.multi_stream or key is None:
            return self.control
        stream_id = self._by_key.get(key)
        if stream_id is not None:
            return stream_id
        if len(self._data) < self.max_streams and credit:
            stream_id = open_stream()
            self._data.append(stream_id)
            self.topics[stream_id] = key
        elif self._data:
            # The pool is full, or the server allows fewer streams than the pool: share.
            stream_id = self._data[zlib.crc32(key.encode("utf-8")) % len(self._data)]
        else:
            raise NoStreamCredit
        self._by_key[key] = stream_id
        return stream_id

    def is_data_stream(self, stream_id: int) -> bool:
        return stream_id in self.topics

    def close(self, stream_id: int) -> None:
        """A data stream ended: topics that rode it get a new one next time."""
        if stream_id in self._data:
            self._data.remove(stream_id)
        self.topics.pop(stream_id, None)
        for key in [k for k, s in self._by_key.items() if s == stream_id]:
            del self._by_key[key]
