"""The QUIC stream pool (mqttquic/transports/_streams.py), without sockets."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from mqttquic.transports._streams import NoStreamCredit, StreamPool

CONTROL = 0


def pool(*, multi_stream: bool = True, max_streams: int = 3,
         persistent: bool = False) -> tuple[StreamPool, list[int]]:
    made = StreamPool(multi_stream=multi_stream, max_streams=max_streams, persistent=persistent)
    made.control = CONTROL
    return made, []


def opener(opened: list[int]) -> Callable[[], int]:
    ids = itertools.count(4, 4)  # client bidirectional stream ids after the control stream

    def open_stream() -> int:
        opened.append(next(ids))
        return opened[-1]

    return open_stream


def test_each_topic_gets_a_stream_of_its_own_until_the_pool_is_full() -> None:
    streams, opened = pool(max_streams=2)
    open_stream = opener(opened)
    a = streams.stream_for("a", credit=True, open_stream=open_stream)
    b = streams.stream_for("b", credit=True, open_stream=open_stream)
    assert (a, b) == (4, 8) and opened == [4, 8]
    assert streams.topics == {4: "a", 8: "b"}
    # Full: later topics share the open streams by a stable hash, and keep their choice.
    shared = [streams.stream_for(f"t{i}", credit=True, open_stream=open_stream)
              for i in range(20)]
    assert set(shared) == {4, 8} and opened == [4, 8]
    again = [streams.stream_for(f"t{i}", credit=True, open_stream=open_stream)
             for i in range(20)]
    assert again == shared


def test_no_credit_shares_the_open_streams_or_says_so() -> None:
    streams, opened = pool()
    open_stream = opener(opened)
    with pytest.raises(NoStreamCredit):
        streams.stream_for("a", credit=False, open_stream=open_stream)
    assert opened == []
    first = streams.stream_for("a", credit=True, open_stream=open_stream)
    assert streams.stream_for("b", credit=False, open_stream=open_stream) == first


def test_single_stream_mode_and_the_control_key_use_the_control_stream() -> None:
    single, opened = pool(multi_stream=False)
    assert single.stream_for("a", credit=True, open_stream=opener(opened)) == CONTROL
    multi, opened = pool()
    assert multi.stream_for(None, credit=True, open_stream=opener(opened)) == CONTROL
    assert opened == []


def test_a_closed_stream_frees_its_topics() -> None:
    streams, opened = pool(max_streams=1)
    open_stream = opener(opened)
    first = streams.stream_for("a", credit=True, open_stream=open_stream)
    assert streams.stream_for("b", credit=True, open_stream=open_stream) == first
    streams.close(first)
    assert not streams.is_data_stream(first) and streams.data_streams == []
    second = streams.stream_for("b", credit=True, open_stream=open_stream)
    assert second != first and streams.topics == {second: "b"}


def test_a_persistent_session_keeps_what_must_survive_on_the_control_stream() -> None:
    persistent, _ = pool(persistent=True)
    clean, _ = pool(persistent=False)
    # QoS 2 state and subscriptions live in the broker's session: the control stream's.
    assert persistent.publish_key("t", 2) is None and clean.publish_key("t", 2) == "t"
    assert persistent.publish_key("t", 1) == "t"
    assert persistent.subscription_key("f/#") is None and clean.subscription_key("f/#") == "f/#"
    # Flows on it continue on the next connection; a data stream's do not.
    assert persistent.outlives_connection(CONTROL) and not persistent.outlives_connection(4)
    assert not clean.outlives_connection(CONTROL)


def test_known_is_the_fast_path_for_a_topic_that_has_its_stream() -> None:
    streams, opened = pool()
    assert streams.known("a") is None  # needs stream_for
    first = streams.stream_for("a", credit=True, open_stream=opener(opened))
    assert streams.known("a") == first and streams.known(None) == CONTROL
    single, _ = pool(multi_stream=False)
    assert single.known("anything") == CONTROL
