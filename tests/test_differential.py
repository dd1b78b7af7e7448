"""Differential tests: the two twins agree on random packets and on random bytes.

conftest.py leaves this module out when only the pure twin is loaded.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttquic import _codec_py as pure
from mqttquic.errors import MalformedPacket

from .conftest import twin_modules

topic_chars = st.characters(blacklist_characters="+#\x00", blacklist_categories=["Cs"])
topics = st.text(topic_chars, min_size=1, max_size=40)
payloads = st.binary(max_size=300)
packet_ids = st.integers(1, 0xFFFF)
user_props = st.lists(st.tuples(st.text(topic_chars, max_size=5), st.text(topic_chars, max_size=5)),
                      max_size=3)


@st.composite
def publish_props(draw: Any) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if draw(st.booleans()):
        props["message_expiry_interval"] = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        props["content_type"] = draw(st.text(topic_chars, max_size=10))
    if draw(st.booleans()):
        props["correlation_data"] = draw(st.binary(max_size=10))
    if draw(st.booleans()):
        props["subscription_identifier"] = draw(st.lists(st.integers(1, 268_435_455), min_size=1,
                                                         max_size=3))
    ups = draw(user_props)
    if ups:
        props["user_property"] = ups
    return props


@st.composite
def packets(draw: Any) -> tuple[int, Any]:
    """A random valid packet built from the pure classes, with its protocol version."""
    version = draw(st.sampled_from([4, 5]))
    kind = draw(st.sampled_from(["publish", "ack", "subscribe", "suback", "unsubscribe",
                                 "connect", "connack", "ping", "disconnect"]))
    v5 = version == 5
    if kind == "publish":
        qos = draw(st.integers(0, 2))
        return version, pure.Publish(
            draw(topics), draw(payloads), qos, draw(st.booleans()), qos > 0 and draw(st.booleans()),
            draw(packet_ids) if qos else None, draw(publish_props()) if v5 else None)
    if kind == "ack":
        cls = draw(st.sampled_from([pure.Puback, pure.Pubrec, pure.Pubrel, pure.Pubcomp]))
        if v5:
            reason = draw(st.sampled_from([0, 0x10, 0x80, 0x92]))
            props = {"reason_string": draw(st.text(topic_chars, max_size=8))} if draw(
                st.booleans()) else None
            return version, cls(draw(packet_ids), reason, props)
        return version, cls(draw(packet_ids))
    if kind == "subscribe":
        subs = draw(st.lists(st.builds(
            pure.Subscription, topics, st.integers(0, 2),
            st.booleans() if v5 else st.just(False), st.booleans() if v5 else st.just(False),
            st.integers(0, 2) if v5 else st.just(0)), min_size=1, max_size=4))
        return version, pure.Subscribe(draw(packet_ids), subs)
    if kind == "suback":
        codes = st.sampled_from([0, 1, 2, 0x80] + ([0x87, 0x8F] if v5 else []))
        return version, pure.Suback(draw(packet_ids), draw(st.lists(codes, min_size=1, max_size=5)))
    if kind == "unsubscribe":
        return version, pure.Unsubscribe(draw(packet_ids), draw(st.lists(topics, min_size=1,
                                                                           max_size=4)))
    if kind == "connect":
        user = draw(st.none() | st.text(topic_chars, max_size=8))
        password = draw(st.none() | st.binary(max_size=8)) if (user is not None or v5) else None
        will = draw(st.none() | st.builds(pure.Will, topics, payloads, st.integers(0, 2),
                                          st.booleans()))
        return version, pure.Connect(draw(st.text(topic_chars, max_size=23)), draw(st.booleans()),
                                     draw(st.integers(0, 0xFFFF)), user, password, will,
                                     protocol_version=version)
    if kind == "connack":
        return version, pure.Connack(draw(st.booleans()), draw(st.sampled_from([0, 1, 5, 0x86])))
    if kind == "ping":
        return version, draw(st.sampled_from([pure.Pingreq(), pure.Pingresp()]))
    return version, pure.Disconnect(draw(st.sampled_from([0, 4, 0x8E])) if v5 else 0)


def _outcome(codec: Any, data: bytes, version: int) -> tuple[str, Any]:
    """What a twin makes of ``data``: the packets' reprs, or the error class."""
    try:
        return "ok", [repr(p) for p in codec.StreamDecoder(version).feed(data)]
    except MalformedPacket as exc:
        return type(exc).__name__, [repr(p) for p in exc.packets]


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(packets())
def test_twins_encode_and_decode_random_packets_alike(item: tuple[int, Any]) -> None:
    version, packet = item
    reference = pure.encode(packet, version)
    for codec in twin_modules():
        assert codec.encode(packet, version) == reference
        decoded = codec.decode_packet(reference, version)
        assert repr(decoded) == repr(packet)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([4, 5]))
def test_twins_agree_on_random_bytes(data: bytes, version: int) -> None:
    outcomes = {codec.IMPLEMENTATION: _outcome(codec, data, version) for codec in twin_modules()}
    assert outcomes["cython"] == outcomes["python"]


@SETTINGS
@given(packets(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                           max_size=4))
def test_twins_agree_on_mutated_packets(item: tuple[int, Any],
                                        mutations: list[tuple[int, int]]) -> None:
    version, packet = item
    data = bytearray(pure.encode(packet, version) * 2)
    for index, value in mutations:
        data[index % len(data)] = value
    outcomes = {codec.IMPLEMENTATION: _outcome(codec, bytes(data), version)
                for codec in twin_modules()}
    assert outcomes["cython"] == outcomes["python"]


def _varint_outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - the twins must fail alike, whatever the class
        return type(exc).__name__, str(exc)


# Beyond 64 bits too: a C ssize_t is 32 bits on armhf and 64 on x86_64 and arm64.
ANY_INT = st.one_of(st.integers(-2**70, 2**70), st.sampled_from(
    [-1, 0, 268_435_455, 268_435_456, 2**31 - 1, 2**31, 2**32, 2**40, 2**63 - 1, 2**63, 2**64]))


@SETTINGS
@given(ANY_INT)
def test_twins_agree_on_every_integer_to_encode(value: int) -> None:
    outcomes = {codec.IMPLEMENTATION: _varint_outcome(lambda c=codec: c.encode_varint(value))
                for codec in twin_modules()}
    assert outcomes["cython"] == outcomes["python"]


@SETTINGS
@given(st.binary(max_size=8), ANY_INT)
def test_twins_agree_on_every_offset_to_decode(data: bytes, offset: int) -> None:
    outcomes = {codec.IMPLEMENTATION: _varint_outcome(lambda c=codec: c.decode_varint(data, offset))
                for codec in twin_modules()}
    assert outcomes["cython"] == outcomes["python"]
