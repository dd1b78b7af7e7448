"""The sans-I/O session, driven packet by packet: no sockets, time passed in."""

from __future__ import annotations

from typing import Any

import pytest

from mqttquic import codec
from mqttquic import events as ev
from mqttquic.codec import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
)
from mqttquic.errors import PublishFailed, SubscribeFailed
from mqttquic.session import CONTROL, PacketIdInUse, Session, SessionClosed

DATA = 4  # a data stream's channel id


def sent(session: Session, version: int = 4) -> list[tuple[int, Any]]:
    return [(channel, codec.decode_packet(data, version))
            for channel, data in session.data_to_send()]


def connected(version: int = 4, keepalive: int = 60, **connack_props: Any) -> Session:
    session = Session(Connect("dev", keepalive=keepalive, protocol_version=version))
    session.connect(now=0.0)
    assert sent(session, version) == [(CONTROL, Connect("dev", keepalive=keepalive,
                                                        protocol_version=version))]
    session.receive_data(CONTROL, codec.encode(Connack(False, 0, connack_props), version), 0.1)
    assert session.events() == [ev.Connected(False, connack_props)]
    return session


def feed(session: Session, channel: int, packet: Any, version: int = 4, now: float = 1.0) -> None:
    session.receive_data(channel, codec.encode(packet, version), now)


@pytest.mark.parametrize("version", [4, 5])
def test_connect_refused(version: int) -> None:
    session = Session(Connect("dev", protocol_version=version))
    session.connect(0.0)
    session.data_to_send()
    code = 0x86 if version == 5 else 4
    feed(session, CONTROL, Connack(False, code), version)
    [event] = session.events()
    assert isinstance(event, ev.ConnectFailed)
    assert event.reason_code == code
    assert event.reason_name in ("Bad User Name or Password", "Bad user name or password")
    assert session.state == "closed"
    with pytest.raises(SessionClosed):
        session.publish("t", b"x")


def test_qos0_publish_and_receive() -> None:
    session = connected()
    assert session.publish("a/b", b"hi", channel=DATA) is None
    assert sent(session) == [(DATA, Publish("a/b", b"hi"))]
    feed(session, DATA, Publish("a/b", b"back"))
    assert session.events() == [ev.MessageReceived(Publish("a/b", b"back"), DATA)]
    assert sent(session) == []


def test_qos1_publish_completes_on_puback() -> None:
    session = connected()
    pid = session.publish("t", b"1", qos=1, channel=DATA)
    assert sent(session) == [(DATA, Publish("t", b"1", 1, packet_id=pid))]
    assert session.in_flight == 1
    feed(session, DATA, Puback(pid))
    assert session.events() == [ev.PublishCompleted(DATA, pid, 0)]  # type: ignore[arg-type]
    assert session.in_flight == 0


def test_qos2_publish_flow() -> None:
    session = connected()
    pid = session.publish("t", b"2", qos=2)
    assert pid is not None
    session.data_to_send()
    feed(session, CONTROL, Pubrec(pid))
    assert sent(session) == [(CONTROL, Pubrel(pid))]
    assert session.events() == []
    feed(session, CONTROL, Pubcomp(pid))
    assert session.events() == [ev.PublishCompleted(CONTROL, pid, 0)]
    assert session.unacknowledged() == []


def test_qos2_pubrec_failure_completes_without_pubrel() -> None:
    session = connected(5)
    pid = session.publish("t", b"2", qos=2)
    assert pid is not None
    session.data_to_send()
    feed(session, CONTROL, Pubrec(pid, 0x87), 5)
    assert sent(session, 5) == []
    assert session.events() == [ev.PublishCompleted(CONTROL, pid, 0x87)]


def test_incoming_qos1_is_acknowledged() -> None:
    session = connected()
    feed(session, DATA, Publish("t", b"x", 1, packet_id=9))
    assert [type(e) for e in session.events()] == [ev.MessageReceived]
    assert sent(session) == [(DATA, Puback(9))]


def test_incoming_qos2_delivered_exactly_once() -> None:
    session = connected()
    message = Publish("t", b"x", 2, packet_id=7)
    feed(session, CONTROL, message)
    assert session.events() == [ev.MessageReceived(message, CONTROL)]
    assert sent(session) == [(CONTROL, Pubrec(7))]
    duplicate = Publish("t", b"x", 2, dup=True, packet_id=7)
    feed(session, CONTROL, duplicate)
    assert session.events() == []  # suppressed
    assert sent(session) == [(CONTROL, Pubrec(7))]  # but acknowledged again
    feed(session, CONTROL, Pubrel(7))
    assert sent(session) == [(CONTROL, Pubcomp(7))]
    feed(session, CONTROL, message)  # the id is free again: a new message
    assert len(session.events()) == 1


def test_packet_ids_are_per_channel() -> None:
    session = connected()
    first = [session.publish("t", b"", qos=1, channel=c) for c in (CONTROL, DATA, 8)]
    assert first == [1, 1, 1]
    assert session.publish("t", b"", qos=1, channel=DATA) == 2
    session.data_to_send()
    feed(session, 8, Puback(1))
    assert session.events() == [ev.PublishCompleted(8, 1, 0)]
    feed(session, 12, Puback(1))  # a channel that sent nothing: ignored, not a crash
    assert session.events() == []


def test_packet_ids_skip_those_in_use_and_wrap() -> None:
    session = connected()
    ids = [session.publish("t", b"", qos=1) for _ in range(3)]
    assert ids == [1, 2, 3]
    session.data_to_send()
    feed(session, CONTROL, Puback(2))
    state = session._channels[CONTROL]
    state.last_id = 0xFFFF
    assert session.publish("t", b"", qos=1) == 2  # 1 and 3 still in flight


def test_receive_maximum_bounds_in_flight() -> None:
    session = connected(5, receive_maximum=2)
    ids = [session.publish("t", bytes([i]), qos=1, channel=DATA) for i in range(4)]
    assert [p.packet_id for _, p in sent(session, 5)] == ids[:2]
    assert session.in_flight == 2
    feed(session, DATA, Puback(ids[0]), 5)
    assert [p.packet_id for _, p in sent(session, 5)] == [ids[2]]
    feed(session, DATA, Puback(ids[1]), 5)
    feed(session, DATA, Puback(ids[2]), 5)
    assert [p.packet_id for _, p in sent(session, 5)] == [ids[3]]


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_and_unsubscribe(version: int) -> None:
    session = connected(version)
    pid = session.subscribe([Subscription("a/#", 1), Subscription("b", 2)], channel=DATA)
    assert sent(session, version) == [
        (DATA, Subscribe(pid, [Subscription("a/#", 1), Subscription("b", 2)]))]
    codes = [1, 0x80] if version == 4 else [1, 0x87]
    feed(session, DATA, Suback(pid, codes), version)
    assert session.events() == [ev.SubscribeCompleted(DATA, pid, codes, {})]
    pid = session.unsubscribe(["a/#"], channel=DATA)
    session.data_to_send()
    feed(session, DATA, Unsuback(pid, [] if version == 4 else [0]), version)
    assert session.events() == [ev.UnsubscribeCompleted(DATA, pid, [] if version == 4 else [0], {})]


def test_keepalive_pings_when_control_idle_and_times_out() -> None:
    session = connected(keepalive=10)
    assert session.next_timer() == 10.0
    session.publish("t", b"", channel=DATA, now=5.0)  # data streams do not reset the control timer
    session.data_to_send()
    session.handle_timer(9.9)
    assert sent(session) == []
    session.handle_timer(10.0)
    assert sent(session) == [(CONTROL, Pingreq())]
    assert session.next_timer() == 15.0  # PINGRESP due within keepalive / 2
    feed(session, CONTROL, Pingresp(), now=10.2)
    assert session.events() == [ev.PongReceived()]
    assert session.next_timer() == 20.0
    session.handle_timer(20.0)
    assert sent(session) == [(CONTROL, Pingreq())]
    session.handle_timer(25.0)
    assert session.events() == [ev.KeepaliveTimeout(5.0)]
    assert session.state == "closed"
    assert session.next_timer() is None


def test_keepalive_zero_never_pings() -> None:
    session = connected(keepalive=0)
    assert session.next_timer() is None


def test_server_keep_alive_overrides() -> None:
    session = connected(5, keepalive=60, server_keep_alive=5)
    assert session.next_timer() == 5.0


def test_malformed_packet_keeps_earlier_messages_then_closes() -> None:
    session = connected()
    good = codec.encode(Publish("ok", b"1"))
    session.receive_data(CONTROL, good + b"\x30\x03\x00\x01#", 1.0)
    events = session.events()
    assert events[0] == ev.MessageReceived(Publish("ok", b"1"), CONTROL)
    assert isinstance(events[1], ev.ProtocolViolation)
    assert "[MQTT-3.3.2-2]" in events[1].reason
    assert session.state == "closed"


def test_malformed_packet_on_a_data_channel_ends_that_channel_only() -> None:
    session = connected()
    pid = session.publish("t", b"1", qos=1, channel=DATA)
    session.publish("u", b"2", qos=1, channel=8)
    session.data_to_send()
    good = codec.encode(Publish("ok", b"1"))
    session.receive_data(DATA, good + b"\x30\x03\x00\x01#", 1.0)
    events = session.events()
    assert events[0] == ev.MessageReceived(Publish("ok", b"1"), DATA)
    assert isinstance(events[1], ev.ChannelFailed) and events[1].channel == DATA
    assert "[MQTT-3.3.2-2]" in events[1].reason
    assert [p.packet_id for p in events[1].unfinished] == [pid]
    assert session.state == "connected"
    # The rest of the broken channel is ignored; the other channel carries on.
    session.receive_data(DATA, codec.encode(Puback(pid)), 1.1)
    feed(session, 8, Puback(1))
    assert session.events() == [ev.PublishCompleted(8, 1, 0)]


def test_disconnect_on_a_data_channel_ends_that_channel_only() -> None:
    session = connected(5)
    session.publish("big", b"x", qos=1, channel=DATA)
    session.data_to_send()
    feed(session, DATA, Disconnect(0x95), 5)
    [event] = session.events()
    assert isinstance(event, ev.ChannelFailed)
    assert event.reason == "broker disconnected: Packet too large (0x95)"
    assert [p.topic for p in event.unfinished] == ["big"]
    assert session.state == "connected"
    session.publish("t", b"ok", qos=1, channel=8)
    assert [p.topic for _, p in sent(session, 5)] == ["t"]


def test_publish_larger_than_the_brokers_maximum_packet_size_is_refused_before_sending() -> None:
    session = connected(5, maximum_packet_size=64)
    with pytest.raises(PublishFailed, match="Packet too large: 1[0-9]{2} bytes.*at most 64") as info:
        session.publish("t", b"x" * 100, qos=1, channel=DATA)
    assert info.value.reason_code == 0x95 and info.value.topic == "t"
    assert sent(session, 5) == [] and session.in_flight == 0
    assert session.publish("t", b"x" * 20, qos=0, channel=DATA) is None
    assert len(sent(session, 5)) == 1


def test_nothing_beyond_what_the_connack_allows_is_sent() -> None:
    # MQTT-3.2.2-11 and its neighbours: refused here, at once, with the reason code the
    # broker would disconnect with; nothing reaches the wire and no packet id is used.
    session = connected(5, maximum_qos=1, retain_available=0, topic_alias_maximum=2,
                        wildcard_subscription_available=0, shared_subscription_available=0,
                        subscription_identifier_available=0)
    refusals: list[tuple[Any, int]] = [
        (lambda: session.publish("t", b"x", qos=2, channel=DATA), 0x9B),
        (lambda: session.publish("t", b"x", qos=0, retain=True, channel=DATA), 0x9A),
        (lambda: session.publish("t", b"x", properties={"topic_alias": 3}, channel=DATA), 0x94),
    ]
    for call, code in refusals:
        with pytest.raises(PublishFailed) as info:
            call()
        assert info.value.reason_code == code
    subscribe_refusals: list[tuple[str, dict[str, Any] | None, int]] = [
        ("a/+/c", None, 0xA2), ("a/#", None, 0xA2), ("$share/g/a", None, 0x9E),
        ("a/b", {"subscription_identifier": 7}, 0xA1),
    ]
    for topic_filter, props, code in subscribe_refusals:
        with pytest.raises(SubscribeFailed) as refused:
            session.subscribe([Subscription(topic_filter)], channel=DATA, properties=props)
        assert refused.value.reason_code == code
    assert sent(session, 5) == [] and session.in_flight == 0
    # What is allowed goes out: QoS 1, a valid alias, a plain filter.
    session.publish("t", b"x", qos=1, properties={"topic_alias": 2}, channel=DATA)
    session.subscribe([Subscription("a/b", 1)], channel=DATA)
    assert [type(p).__name__ for _, p in sent(session, 5)] == ["Publish", "Subscribe"]


def test_a_publish_above_maximum_qos_may_be_downgraded_when_asked() -> None:
    session = Session(Connect("dev", protocol_version=5), downgrade_qos=True)
    session.connect(now=0.0)
    session.receive_data(CONTROL, codec.encode(Connack(False, 0, {"maximum_qos": 0}), 5), 0.1)
    sent(session, 5)
    assert session.publish("t", b"x", qos=2, channel=DATA) is None  # QoS 0: no packet id
    [(_, packet)] = sent(session, 5)
    assert packet.qos == 0


def test_mqtt_311_and_a_connack_without_limits_allow_everything() -> None:
    for session in (connected(4), connected(5)):
        version = session.protocol_version
        session.publish("t", b"x", qos=2, retain=True, channel=DATA)
        session.subscribe([Subscription("$share/g/a/#", 2)], channel=DATA)
        assert len(sent(session, version)) == 2


def test_server_disconnect_v5() -> None:
    session = connected(5)
    feed(session, CONTROL, Disconnect(0x8B, {"reason_string": "bye"}), 5)
    assert session.events() == [ev.ServerDisconnected(0x8B, "Server shutting down",
                                                      {"reason_string": "bye"})]


def test_client_disconnect() -> None:
    session = connected(5)
    session.disconnect(0x04, now=3.0)
    assert sent(session, 5) == [(CONTROL, Disconnect(0x04))]
    assert session.state == "closed"


def test_unexpected_packet_is_a_protocol_violation() -> None:
    session = connected()
    feed(session, CONTROL, Subscribe(1, [Subscription("a")]))
    [event] = session.events()
    assert isinstance(event, ev.ProtocolViolation)


def test_close_channel_returns_unfinished_publishes() -> None:
    session = connected(5, receive_maximum=1)
    session.publish("a", b"1", qos=1, channel=DATA)
    session.publish("b", b"2", qos=1, channel=8)  # waits for quota
    session.data_to_send()
    unfinished = session.close_channel(DATA)
    assert [p.topic for p in unfinished] == ["a"]
    # The freed quota lets the waiting publish go.
    assert [(c, p.topic) for c, p in sent(session, 5)] == [(8, "b")]


def test_topic_alias_from_server() -> None:
    session = connected(5)
    feed(session, DATA, Publish("long/topic", b"1", properties={"topic_alias": 1}), 5)
    feed(session, DATA, Publish("", b"2", properties={"topic_alias": 1}), 5)
    assert [e.packet.topic for e in session.events()] == ["long/topic", "long/topic"]
    feed(session, DATA, Publish("", b"3", properties={"topic_alias": 2}), 5)
    [event] = session.events()
    assert isinstance(event, ev.ChannelFailed) and "unknown topic alias 2" in event.reason


def test_unacknowledged_lists_publishes_and_pubrels() -> None:
    session = connected()
    one = session.publish("a", b"1", qos=1)
    two = session.publish("b", b"2", qos=2, channel=DATA)
    assert one is not None and two is not None
    session.data_to_send()
    feed(session, DATA, Pubrec(two))
    kinds = sorted((c, type(p).__name__) for c, p in session.unacknowledged())
    assert kinds == [(CONTROL, "Publish"), (DATA, "Pubrel")]


def _lost_with_flows() -> Session:
    """A persistent session that lost its connection mid-flow."""
    session = connected()
    one = session.publish("a", b"1", qos=1)
    two = session.publish("b", b"2", qos=2)
    three = session.publish("c", b"3", qos=2)
    assert (one, two, three) == (1, 2, 3)
    session.data_to_send()
    feed(session, CONTROL, Pubrec(2))  # PUBREL 2 is now due; 3 has no PUBREC yet
    feed(session, CONTROL, Publish("in", b"x", 2, packet_id=9))  # inbound QoS 2, no PUBREL yet
    session.data_to_send()
    session.events()
    return session


def test_persistent_session_continues_flows_after_reconnect() -> None:
    old = _lost_with_flows()
    new = Session(Connect("dev", clean_start=False))
    new.adopt(old)
    new.connect(0.0)
    new.data_to_send()
    feed(new, CONTROL, Connack(True, 0))
    assert new.events() == [ev.Connected(True, {})]
    assert sent(new) == [(CONTROL, Publish("a", b"1", 1, dup=True, packet_id=1)),
                         (CONTROL, Pubrel(2)),
                         (CONTROL, Publish("c", b"3", 2, dup=True, packet_id=3))]
    feed(new, CONTROL, Pubcomp(2))
    feed(new, CONTROL, Puback(1))
    assert new.events() == [ev.PublishCompleted(CONTROL, 2, 0), ev.PublishCompleted(CONTROL, 1, 0)]
    # The inbound QoS 2 message the broker sends again is still a duplicate.
    feed(new, CONTROL, Publish("in", b"x", 2, dup=True, packet_id=9))
    assert new.events() == []
    assert sent(new) == [(CONTROL, Pubrec(9))]
    # New publishes do not reuse ids still in flight.
    assert new.publish("d", b"4", qos=1) == 4


def test_lost_session_completes_released_flows_and_resends_the_rest() -> None:
    old = _lost_with_flows()
    new = Session(Connect("dev", clean_start=False))
    new.adopt(old)
    new.connect(0.0)
    new.data_to_send()
    feed(new, CONTROL, Connack(False, 0))
    assert new.events() == [ev.Connected(False, {}), ev.PublishCompleted(CONTROL, 2, 0)]
    assert [p for _, p in sent(new)] == [Publish("a", b"1", 1, dup=True, packet_id=1),
                                         Publish("c", b"3", 2, dup=True, packet_id=3)]
    feed(new, CONTROL, Publish("in", b"x", 2, packet_id=9))
    assert len(new.events()) == 1  # a new delivery: the broker's session is new too


def test_a_stored_message_keeps_its_packet_id_and_dup_flag() -> None:
    session = connected()
    assert session.publish("s", b"1", qos=1, packet_id=700, dup=True) == 700
    assert sent(session) == [(CONTROL, Publish("s", b"1", 1, dup=True, packet_id=700))]
    with pytest.raises(PacketIdInUse):  # its flow is not done: the id is not handed out twice
        session.publish("s", b"2", qos=1, packet_id=700)
    feed(session, CONTROL, Puback(700))
    assert session.events() == [ev.PublishCompleted(CONTROL, 700, 0)]
    assert session.publish("s", b"3", qos=1, packet_id=700) == 700  # free again


def test_a_held_pubrec_waits_for_release_and_survives_a_reconnect() -> None:
    session = connected()
    session.publish("q2", b"x", qos=2, packet_id=5, hold_release=True)
    session.data_to_send()
    feed(session, CONTROL, Pubrec(5))
    assert session.events() == [ev.PublishReceived(CONTROL, 5)]
    assert sent(session) == []  # no PUBREL until the outbox has recorded the PUBREC
    # The connection goes before release(): the next one sends the PUBLISH again (DUP),
    # and the broker, which still holds the message, answers PUBREC again.
    new = Session(Connect("dev", clean_start=False))
    new.adopt(session)
    new.connect(0.0)
    new.data_to_send()
    feed(new, CONTROL, Connack(True, 0))
    new.events()
    assert sent(new) == [(CONTROL, Publish("q2", b"x", 2, dup=True, packet_id=5))]
    feed(new, CONTROL, Pubrec(5))
    assert new.events() == [ev.PublishReceived(CONTROL, 5)]
    new.release(CONTROL, 5)
    assert sent(new) == [(CONTROL, Pubrel(5))]
    feed(new, CONTROL, Pubcomp(5))
    assert new.events() == [ev.PublishCompleted(CONTROL, 5, 0)]
    assert new.in_flight == 0


def test_releasing_a_flow_an_earlier_run_released_sends_pubrel_alone() -> None:
    session = connected(version=5)
    session.release(CONTROL, 9)  # from the outbox: PUBREC had come before the restart
    assert sent(session, 5) == [(CONTROL, Pubrel(9))]
    assert session.in_flight == 1
    feed(session, CONTROL, Pubcomp(9, 0x92), 5)  # the broker had completed it already
    assert session.events() == [ev.PublishCompleted(CONTROL, 9, 0x92)]
    assert session.in_flight == 0
