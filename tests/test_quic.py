"""MQTT over QUIC end to end: real aioquic on loopback, the gateway, real mosquitto."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, QuicEvent, StreamDataReceived, StreamReset
from aioquic.tls import SessionTicket

from mqttquic import codec
from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.codec import Connack, Connect, Puback, Publish, Suback, Subscribe, Subscription
from mqttquic.config import TransportType
from mqttquic.errors import ConnectError, ConnectionRefused
from mqttquic.message import Message

from .brokers import Mosquitto
from .conftest import USERS, client_config
from .waits import eventually

VERSIONS = pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])


async def collect(iterator: AsyncIterator[Message], count: int, timeout: float = 5.0,
                  linger: float = 0.0) -> list[Message]:
    """``count`` messages, then anything more that arrives within ``linger`` seconds."""
    got: list[Message] = []

    async def take() -> None:
        async for message in iterator:
            got.append(message)
            if len(got) >= count:
                return

    await asyncio.wait_for(take(), timeout)
    if linger:
        try:
            await asyncio.wait_for(take(), linger)
        except TimeoutError:
            pass
    return got


async def count_payloads(iterator: AsyncIterator[Message], seen: set[int], total: int) -> None:
    """Add each message's integer payload to ``seen`` until ``total`` distinct ones came."""
    async for message in iterator:
        seen.add(int(message.payload))
        if len(seen) == total:
            return


@VERSIONS
async def test_connect_over_quic(gateway: Any, certs: CertificateFiles, version: int) -> None:
    async with Client(client_config(gateway, certs, protocol_version=version)) as client:
        stats = client.get_stats()
        assert stats["transport"] == "quic"
        assert client.transport_type is TransportType.QUIC
        assert stats["connected"] is True
        assert 0 < stats["connect_time"] < 5
        assert stats["rtt_ms"] is not None and stats["rtt_ms"] > 0
        assert stats["streams_open"] == 1
        assert stats["bytes_sent"] > 0 and stats["bytes_received"] >= 4
    assert client.get_stats()["connected"] is False


@VERSIONS
async def test_qos_0_1_2_to_itself_exactly_once(gateway: Any, certs: CertificateFiles,
                                                topic_root: str, version: int) -> None:
    async with Client(client_config(gateway, certs, protocol_version=version)) as client:
        messages = client.messages()
        assert await client.subscribe(f"{topic_root}/#", qos=2) == [2]
        for qos in (0, 1, 2):
            await client.publish(f"{topic_root}/q{qos}", f"payload {qos}", qos=qos)
        got = await collect(messages, 3, linger=0.5)
        assert sorted((m.topic, m.payload, m.qos) for m in got) == [
            (f"{topic_root}/q0", b"payload 0", 0),
            (f"{topic_root}/q1", b"payload 1", 1),
            (f"{topic_root}/q2", b"payload 2", 2),
        ]
        stats = client.get_stats()
        assert stats["messages_sent"] == 3 and stats["messages_received"] == 3


@VERSIONS
async def test_publish_parallel_three_topics_three_streams(gateway: Any, certs: CertificateFiles,
                                                           topic_root: str, version: int) -> None:
    async with Client(client_config(gateway, certs, protocol_version=version)) as client:
        messages = client.messages()
        await client.subscribe(f"{topic_root}/#", qos=1)
        batch = [{"topic": f"{topic_root}/{name}", "payload": {"value": i}, "qos": 1}
                 for i, name in enumerate(["temperature", "humidity", "pressure"])]
        results = await client.publish_parallel(batch)
        assert results == {item["topic"]: True for item in batch}
        transport: Any = client._connector.transport
        assert sorted(transport.streams.values()) == sorted([f"{topic_root}/#", *results])
        got = await collect(messages, 3)
        assert sorted(m.json()["value"] for m in got) == [0, 1, 2]
        assert client.get_stats()["streams_open"] == 5  # control, subscription, three topics


async def test_subscription_on_a_data_stream_receives_on_it(gateway: Any, certs: CertificateFiles,
                                                            topic_root: str) -> None:
    async with Client(client_config(gateway, certs)) as client:
        messages = client.messages()
        await client.subscribe(f"{topic_root}/a", qos=1)
        await client.subscribe(f"{topic_root}/b", qos=1)
        transport: Any = client._connector.transport
        stream_of = {topic: stream_id for stream_id, topic in transport.streams.items()}
        stream_a, stream_b = stream_of[f"{topic_root}/a"], stream_of[f"{topic_root}/b"]
        assert len({stream_a, stream_b, transport.control_stream}) == 3
        await client.publish(f"{topic_root}/b", b"to b", qos=1)
        await client.publish(f"{topic_root}/a", b"to a", qos=1)
        got = {m.topic: m.stream_id for m in await collect(messages, 2)}
        assert got == {f"{topic_root}/a": stream_a, f"{topic_root}/b": stream_b}


async def test_on_message_callback_sync_and_async(gateway: Any, certs: CertificateFiles,
                                                  topic_root: str) -> None:
    seen: list[str] = []
    awaited = asyncio.Event()

    async def later(message: Message) -> None:
        awaited.set()

    def callback(message: Message) -> Any:
        seen.append(message.topic)
        return later(message)

    async with Client(client_config(gateway, certs), on_message=callback) as client:
        assert await client.connect() is True  # already connected: nothing new happens
        await client.subscribe([(f"{topic_root}/a", 1), f"{topic_root}/b"], qos=0)
        await client.publish(f"{topic_root}/a", b"1", qos=1)
        await client.publish(f"{topic_root}/b", b"2", qos=1)
        await asyncio.wait_for(awaited.wait(), 5)
        await eventually(lambda: len(seen) == 2, 2.5)
        assert sorted(seen) == [f"{topic_root}/a", f"{topic_root}/b"]
        # Only on_message reads them: nothing waits in a queue for an iterator nobody runs.
        assert client._queue.qsize() == 0


async def test_unsubscribe_codes_follow_the_filters_order(gateway: Any, certs: CertificateFiles,
                                                          topic_root: str) -> None:
    async with Client(client_config(gateway, certs, protocol_version=5, max_streams=2)) as client:
        subscribed = [f"{topic_root}/s{i}" for i in range(3)]
        await client.subscribe(subscribed, qos=1)
        filters = [subscribed[0], f"{topic_root}/never0", subscribed[1], f"{topic_root}/never1",
                   subscribed[2]]
        codes = await client.unsubscribe(filters)
        assert len(client._connector.transport.streams) == 2  # the filters shared them
        assert codes == [0x00, 0x11, 0x00, 0x11, 0x00]  # Success / No subscription existed


async def test_single_stream_mode_uses_the_control_stream(gateway: Any, certs: CertificateFiles,
                                                          topic_root: str) -> None:
    async with Client(client_config(gateway, certs, multi_stream=False)) as client:
        messages = client.messages()
        await client.subscribe(f"{topic_root}/#", qos=1)
        assert await client.publish_parallel(
            [{"topic": f"{topic_root}/{i}", "payload": b"x", "qos": 1} for i in range(3)]) == {
            f"{topic_root}/{i}": True for i in range(3)}
        got = await collect(messages, 3)
        assert {m.stream_id for m in got} == {0}
        assert client.get_stats()["streams_open"] == 1


async def test_stream_pool_is_bounded_and_shared_by_hash(gateway: Any, certs: CertificateFiles,
                                                         topic_root: str) -> None:
    async with Client(client_config(gateway, certs, max_streams=2)) as client:
        topics = [f"{topic_root}/{i}" for i in range(6)]
        results = await client.publish_parallel([{"topic": t, "payload": b"x", "qos": 1}
                                                 for t in topics])
        assert all(results.values())
        transport: Any = client._connector.transport
        assert len(transport.streams) == 2
        await client.publish(topics[0], b"again", qos=1)
        assert len(transport.streams) == 2  # its stream again (which one: tests/test_streams.py)


@VERSIONS
async def test_paho_tcp_to_quic_and_back(gateway: Any, certs: CertificateFiles, mosquitto: Mosquitto,
                                         topic_root: str, version: int) -> None:
    paho_got: list[tuple[str, bytes]] = []
    subscribed = asyncio.Event()
    loop = asyncio.get_running_loop()
    tcp = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"paho-{topic_root[-6:]}",
                      protocol=paho.MQTTv5 if version == 5 else paho.MQTTv311)
    tcp.on_message = lambda c, u, m: paho_got.append((m.topic, m.payload))
    tcp.on_subscribe = lambda *args: loop.call_soon_threadsafe(subscribed.set)
    tcp.connect("127.0.0.1", mosquitto.port)
    tcp.loop_start()
    try:
        tcp.subscribe(f"{topic_root}/to-paho", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        async with Client(client_config(gateway, certs, protocol_version=version)) as client:
            messages = client.messages()
            await client.subscribe(f"{topic_root}/to-quic", qos=1)
            tcp.publish(f"{topic_root}/to-quic", b"from paho", qos=1).wait_for_publish(5)
            [message] = await collect(messages, 1)
            assert (message.topic, message.payload) == (f"{topic_root}/to-quic", b"from paho")
            await client.publish(f"{topic_root}/to-paho", b"from quic", qos=1)
            await eventually(lambda: paho_got, 5)
            assert paho_got == [(f"{topic_root}/to-paho", b"from quic")]
    finally:
        tcp.loop_stop()
        tcp.disconnect()


async def test_keepalive_keeps_an_idle_connection_alive(gateway: Any, certs: CertificateFiles,
                                                        topic_root: str) -> None:
    # keepalive 2 s: mosquitto drops a silent client after 3 s, QUIC idles out after 5 s.
    async with Client(client_config(gateway, certs, keepalive=2)) as client:
        messages = client.messages()
        await client.subscribe(f"{topic_root}/t", qos=1)
        sent_before = client.get_stats()["bytes_sent"]
        await asyncio.sleep(5.5)  # a quiet connection for more than two keepalive periods
        assert client.is_connected
        assert client.get_stats()["bytes_sent"] >= sent_before + 2 * 2  # PINGREQs went out
        await client.publish(f"{topic_root}/t", b"still here", qos=1)
        [message] = await collect(messages, 1)
        assert message.payload == b"still here"


@VERSIONS
async def test_wrong_password_is_refused(auth_gateway: Any, certs: CertificateFiles,
                                         version: int) -> None:
    config = client_config(auth_gateway, certs, protocol_version=version, username="device",
                           password="wrong")
    with pytest.raises(ConnectionRefused) as info:
        await Client(config).connect()
    assert info.value.reason_code in ((4, 5) if version == 4 else (0x86, 0x87))
    assert "refused" in str(info.value)
    good = client_config(auth_gateway, certs, protocol_version=version, username="device",
                         password=USERS["device"])
    async with Client(good) as client:
        assert client.is_connected


async def test_wrong_ca_fails_verification(gateway: Any, certs: CertificateFiles,
                                           other_ca: CertificateFiles) -> None:
    config = client_config(gateway, certs, ca_file=str(other_ca.ca_file))
    with pytest.raises(ConnectError, match="(?i)certificate"):
        await Client(config).connect()


async def test_insecure_skips_verification(gateway: Any, certs: CertificateFiles,
                                           other_ca: CertificateFiles) -> None:
    config = client_config(gateway, certs, ca_file=str(other_ca.ca_file), insecure=True)
    async with Client(config) as client:
        assert client.is_connected


async def test_timeout_is_a_clear_connect_error(certs: CertificateFiles) -> None:
    import socket

    from .brokers import free_port

    # A UDP port that takes datagrams and never answers (a closed one is refused at once).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))

        class NoGateway:
            quic_port = black_hole.getsockname()[1]
            tcp_port = free_port()

        config = client_config(NoGateway(), certs, connect_timeout=1.0)
        with pytest.raises(ConnectError, match=r"QUIC connect to 127.0.0.1:\d+ timed out"):
            await Client(config).connect()


class RawQuic(QuicConnectionProtocol):
    """A bare QUIC client: bytes per stream, no MQTT logic of ours in the way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: dict[int, bytearray] = {}
        self.arrived = asyncio.Event()
        self.resets: list[int] = []
        self.handshake: HandshakeCompleted | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self.received.setdefault(event.stream_id, bytearray()).extend(event.data)
            self.arrived.set()
        elif isinstance(event, StreamReset):
            self.resets.append(event.stream_id)
            self.arrived.set()
        elif isinstance(event, HandshakeCompleted):
            self.handshake = event

    def write(self, stream_id: int, data: bytes) -> None:
        self._quic.send_stream_data(stream_id, data)
        self.transmit()

    async def packets(self, stream_id: int, count: int, version: int = 4) -> list[Any]:
        for _ in range(100):
            data = bytes(self.received.get(stream_id, b""))
            packets = codec.StreamDecoder(version).feed(data)
            if len(packets) >= count:
                return packets
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.1)
            except TimeoutError:
                pass
        raise AssertionError(f"stream {stream_id}: fewer than {count} packets")


async def test_data_stream_before_connack_is_held_then_served(gateway: Any, certs: CertificateFiles,
                                                              topic_root: str) -> None:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["mqtt"],
                                      server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
    configuration.load_verify_locations(cafile=str(certs.ca_file))
    async with quic_connect("127.0.0.1", gateway.quic_port, configuration=configuration,
                            create_protocol=RawQuic) as raw:
        assert isinstance(raw, RawQuic)
        # CONNECT, then at once, before any CONNACK: a SUBSCRIBE and a PUBLISH on data streams.
        raw.write(0, codec.encode(Connect(f"raw-{topic_root[-6:]}")))
        raw.write(4, codec.encode(Subscribe(1, [Subscription(f"{topic_root}/x", 1)])))
        raw.write(4, codec.encode(Publish(f"{topic_root}/x", b"early", 1, packet_id=2)))
        assert await raw.packets(0, 1) == [Connack(False, 0)]
        packets = await raw.packets(4, 3)
        assert Suback(1, [1]) in packets and Puback(2) in packets
        [message] = [p for p in packets if isinstance(p, Publish)]
        assert (message.topic, message.payload) == (f"{topic_root}/x", b"early")
        # Data streams have their own packet ids: id 1 again, on another stream.
        raw.write(8, codec.encode(Publish(f"{topic_root}/y", b"", 1, packet_id=1)))
        assert await raw.packets(8, 1) == [Puback(1)]


async def test_gateway_limits_data_streams(mosquitto: Mosquitto, certs: CertificateFiles) -> None:
    from mqttquic.gateway import Gateway

    from .conftest import gateway_config

    config = gateway_config(mosquitto, certs)
    config.max_data_streams = 2
    async with Gateway(config) as gw:
        client_cfg = client_config(gw, certs, max_streams=3)
        async with Client(client_cfg) as client:
            results = await client.publish_parallel(
                [{"topic": f"limit/{i}", "payload": b"x", "qos": 1} for i in range(3)])
            # Two data streams are served; the third is reset by the gateway.
            assert sorted(results.values()) == [False, True, True]
            assert client.is_connected


def raw_configuration(certs: CertificateFiles) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["mqtt"],
                                      server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
    configuration.load_verify_locations(cafile=str(certs.ca_file))
    return configuration


async def test_gateway_issues_and_honours_0rtt_tickets(gateway: Any, certs: CertificateFiles) -> None:
    tickets: list[SessionTicket] = []
    async with quic_connect("127.0.0.1", gateway.quic_port, configuration=raw_configuration(certs),
                            create_protocol=RawQuic, session_ticket_handler=tickets.append) as raw:
        assert isinstance(raw, RawQuic)
        raw.write(0, codec.encode(Connect("zero-rtt-1")))
        await raw.packets(0, 1)
    assert tickets and tickets[-1].max_early_data_size == 0xFFFFFFFF
    configuration = raw_configuration(certs)
    configuration.session_ticket = tickets[-1]
    async with quic_connect("127.0.0.1", gateway.quic_port, configuration=configuration,
                            create_protocol=RawQuic, wait_connected=False) as raw:
        assert isinstance(raw, RawQuic)
        # CONNECT in the first flight, as 0-RTT data.
        raw.write(0, codec.encode(Connect("zero-rtt-2")))
        assert await raw.packets(0, 1) == [Connack(False, 0)]
        assert raw.handshake is not None
        assert raw.handshake.session_resumed and raw.handshake.early_data_accepted


async def test_gateway_bounds_what_a_stream_may_buffer(mosquitto: Mosquitto,
                                                       certs: CertificateFiles) -> None:
    from mqttquic.gateway import Gateway

    from .conftest import gateway_config

    config = gateway_config(mosquitto, certs)
    config.max_buffer = 1000
    async with Gateway(config) as gw:
        async with quic_connect("127.0.0.1", gw.quic_port, configuration=raw_configuration(certs),
                                create_protocol=RawQuic) as raw:
            assert isinstance(raw, RawQuic)
            # A data stream with no CONNECT on the control stream waits; past 1000 bytes
            # the gateway resets it instead of buffering without end.
            raw.write(4, codec.encode(Publish("t", bytes(600))))
            # 0.2 s: the gateway resets a stream within a round trip (under 1 ms here).
            await asyncio.sleep(0.2)
            assert raw.resets == []
            raw.write(4, codec.encode(Publish("t", bytes(600))))
            await eventually(lambda: raw.resets, 2.5)
            assert raw.resets == [4]


async def test_a_qos0_publish_right_before_disconnect_is_delivered(
        gateway: Any, certs: CertificateFiles, topic_root: str) -> None:
    """DISCONNECT (control stream) must not overtake a publish on a data stream."""
    async with Client(client_config(gateway, certs, transport="tcp")) as watcher:
        await watcher.subscribe(f"{topic_root}/#", qos=0)
        for i in range(10):
            async with Client(client_config(gateway, certs, transport="quic")) as client:
                await client.publish(f"{topic_root}/last/{i}", str(i), qos=0, retain=False)
        got = await collect(watcher.messages(), 10, timeout=10)
    assert sorted(int(m.payload) for m in got) == list(range(10))
