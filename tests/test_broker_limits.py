"""What the broker's CONNACK allows, and what a reconnect to a broker that kept the session
must not repeat: against real mosquitto configured as a hardened broker (max_qos,
retain_available, max_keepalive) and one that keeps sessions across a restart, over QUIC
(through the gateway) and TCP+TLS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.errors import PublishFailed, SubscribeFailed
from mqttquic.gateway import Gateway
from mqttquic.message import Message

from .brokers import Mosquitto, relay_both_ways
from .conftest import client_config, gateway_config
from .test_quic import collect
from .waits import eventually

TRANSPORTS = pytest.mark.parametrize("transport", ["quic", "tcp"])


HARDENED = ("max_qos 1", "retain_available false", "max_keepalive 30", "max_topic_alias 2")


@pytest.fixture
async def hardened_gateway(brokers: Any, gateways: Any) -> Gateway:
    gateway: Gateway = await gateways(brokers(*HARDENED))
    return gateway


@TRANSPORTS
async def test_nothing_above_what_the_connack_allows_is_sent(
        hardened_gateway: Gateway, certs: CertificateFiles, transport: str, topic_root: str) -> None:
    config = client_config(hardened_gateway, certs, transport=transport, protocol_version=5,
                           keepalive=120)
    async with Client(config) as client:
        limits = client.server_limits
        assert (limits.maximum_qos, limits.retain_available, limits.server_keep_alive,
                limits.topic_alias_maximum) == (1, False, 30, 2)
        # Refused at once, named, with the code the broker would disconnect with; the
        # connection stays (the broker used to disconnect 0x9B three times).
        with pytest.raises(PublishFailed, match="QoS 2 not supported: the broker's Maximum QoS is 1"
                           ) as above:
            await client.publish(f"{topic_root}/q2", b"x", qos=2)
        assert above.value.reason_code == 0x9B
        with pytest.raises(PublishFailed, match="Retain not supported") as retained:
            await client.publish(f"{topic_root}/r", b"x", qos=1, retain=True)
        assert retained.value.reason_code == 0x9A
        with pytest.raises(PublishFailed, match="Topic Alias 3 invalid") as alias:
            await client.publish(f"{topic_root}/a", b"x", qos=1, properties={"topic_alias": 3})
        assert alias.value.reason_code == 0x94
        await client.publish(f"{topic_root}/q1", b"x", qos=1, properties={"topic_alias": 2})
        assert client.is_connected and client.get_stats()["reconnect_count"] == 0
        # The broker's Server Keep Alive replaces ours (its pings are what it expects).
        transport_object: Any = client._connector.transport
        keepalive = (transport_object.session.keepalive.interval if transport == "quic"
                     else transport_object._client._keepalive)
        assert keepalive == 30


@TRANSPORTS
async def test_a_publish_above_maximum_qos_is_downgraded_when_asked(
        hardened_gateway: Gateway, certs: CertificateFiles, transport: str, topic_root: str,
        caplog: pytest.LogCaptureFixture) -> None:
    topic = f"{topic_root}/down"
    async with Client(client_config(hardened_gateway, certs, transport=transport,
                                    protocol_version=5)) as watcher:
        await watcher.subscribe(topic, qos=1)
        async with Client(client_config(hardened_gateway, certs, transport=transport,
                                        protocol_version=5, downgrade_qos=True)) as client:
            await client.publish(topic, b"reading", qos=2)
        [message] = await collect(watcher.messages(), 1, timeout=5)
    assert (message.payload, message.qos) == (b"reading", 1)
    assert "QoS 2 sent as QoS 1, the broker's Maximum QoS" in caplog.text


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions and retained messages across its restart."""
    broker = Mosquitto(tmp_path / "persistent", persistence=True).start()
    yield broker
    broker.stop()


async def _restart(broker: Mosquitto, client: Client) -> None:
    """Restart the broker; return once ``client`` is connected again."""
    connects = client.get_stats()["reconnect_count"]
    broker.stop()
    broker.start()
    await eventually(lambda: client.get_stats()["reconnect_count"] > connects and client.is_connected,
                 15.0)


@TRANSPORTS
@pytest.mark.parametrize("version", [4, 5])
async def test_retained_messages_do_not_come_back_when_the_broker_kept_the_session(
        persistent_broker: Mosquitto, certs: CertificateFiles, transport: str, version: int,
        topic_root: str) -> None:
    topic = f"{topic_root}/state"
    async with Gateway(gateway_config(persistent_broker, certs)) as gateway:
        settings: dict[str, Any] = dict(transport=transport, protocol_version=version)
        async with Client(client_config(gateway, certs, **settings)) as publisher:
            await publisher.publish(topic, b"retained", qos=1, retain=True)
        extra = {"session_expiry_interval": 300} if version == 5 else {}
        subscriber = Client(client_config(gateway, certs, clean_start=False,
                                          reconnect_min_delay=0.05, reconnect_max_delay=0.2,
                                          client_id=f"keeper-{uuid.uuid4().hex[:8]}",
                                          **settings, **extra))
        async with subscriber:
            got: list[Message] = []

            async def gather() -> None:
                async for message in subscriber.messages():
                    got.append(message)

            gatherer = asyncio.ensure_future(gather())
            await subscriber.subscribe(topic, qos=1)
            await eventually(lambda: len(got) == 1, 5.0)
            await _restart(persistent_broker, subscriber)
            assert subscriber.session_present
            async with Client(client_config(gateway, certs, **settings)) as publisher:
                await publisher.publish(topic, b"fresh", qos=1)
            await eventually(lambda: len(got) >= 2, 10.0)
            await asyncio.sleep(0.5)  # a repeated retained message would be here by now
            gatherer.cancel()
    assert [m.payload for m in got] == [b"retained", b"fresh"]


@TRANSPORTS
async def test_a_persistent_session_without_a_client_id_comes_back_under_the_assigned_one(
        persistent_broker: Mosquitto, certs: CertificateFiles, transport: str,
        topic_root: str) -> None:
    topic = f"{topic_root}/assigned"
    async with Gateway(gateway_config(persistent_broker, certs)) as gateway:
        config = client_config(gateway, certs, transport=transport, protocol_version=5,
                               device_id="", clean_start=False, session_expiry_interval=300,
                               reconnect_min_delay=0.05, reconnect_max_delay=0.2)
        async with Client(config) as client:
            assigned = config.client_id
            assert assigned and client.server_limits.assigned_client_identifier == assigned
            await client.subscribe(topic, qos=1)
            await _restart(persistent_broker, client)
            # The same session: the broker knew the name, and the subscription is there.
            assert client.session_present and config.client_id == assigned
            async with Client(client_config(gateway, certs, transport=transport)) as publisher:
                await publisher.publish(topic, b"still yours", qos=1)
            [message] = await collect(client.messages(), 1, timeout=5)
    assert message.payload == b"still yours"


@TRANSPORTS
async def test_a_slow_reader_loses_no_acknowledged_message(
        gateway: Gateway, certs: CertificateFiles, transport: str, topic_root: str) -> None:
    """A subscriber that does not read: QoS 1 is pushed back (its PUBACK waits until the
    application takes the message, and the broker sends no more than its in-flight
    window, 20 in mosquitto), never dropped; QoS 0 beyond the queue is dropped, counted.
    Before: 15 of 20 QoS 1 messages, acknowledged to the broker, were dropped."""
    topic = f"{topic_root}/slow"
    settings: dict[str, Any] = dict(transport=transport)
    async with Client(client_config(gateway, certs, **settings), max_queued_messages=5) as reader:
        await reader.subscribe([(f"{topic}/1", 1), (f"{topic}/0", 0)])
        async with Client(client_config(gateway, certs, **settings)) as publisher:
            for i in range(50):
                await publisher.publish(f"{topic}/1", str(i), qos=1)
            # 1 s: on loopback all 50 reach the reader in well under 0.1 s, were its
            # acknowledgements not held back; the broker's window (20) stops them instead.
            await asyncio.sleep(1.0)
            held = reader._queue.qsize()
            assert 5 <= held <= 20  # the broker waits for acknowledgements
            got = await collect(reader.messages(), 50, timeout=20)
            assert [int(m.payload) for m in got] == list(range(50))
            assert reader.get_stats()["messages_dropped"] == 0
            # QoS 0 promised nothing: a full queue drops it, and says how many.
            for i in range(5):
                await publisher.publish(f"{topic}/1", f"fill-{i}", qos=1)
            await eventually(lambda: reader._queue.qsize() == 5, 5.0)
            for i in range(10):
                await publisher.publish(f"{topic}/0", str(i), qos=0)
            await eventually(lambda: reader.get_stats()["messages_dropped"] == 10, 5.0)


class _ConnackRewriter:
    """A broker that says less than mosquitto can: a TCP relay in front of it that adds
    properties to its MQTT 5 CONNACK (as EMQX or HiveMQ configured without wildcard or
    shared subscriptions, or subscription identifiers, say)."""

    def __init__(self, upstream_port: int, properties: dict[str, Any]) -> None:
        self.upstream_port = upstream_port
        self.properties = properties
        self.port = 0
        self.rewritten = 0

    async def __aenter__(self) -> _ConnackRewriter:
        from mqttquic import codec
        from mqttquic._aio import read_packet

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            connect = await read_packet(reader)
            version = codec.decode_packet(connect).protocol_version
            up_writer.write(connect)
            connack = await read_packet(up_reader)
            if version == 5:
                packet = codec.decode_packet(connack, 5)
                packet.properties = {**packet.properties, **self.properties}
                connack = codec.encode(packet, 5)
                self.rewritten += 1
            writer.write(connack)
            await relay_both_ways((reader, writer), (up_reader, up_writer))

        self.server = await asyncio.start_server(relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


@TRANSPORTS
async def test_subscriptions_the_broker_does_not_support_are_refused_before_sending(
        mosquitto: Mosquitto, certs: CertificateFiles, transport: str, topic_root: str) -> None:
    properties = {"wildcard_subscription_available": 0, "shared_subscription_available": 0,
                  "subscription_identifier_available": 0}
    async with _ConnackRewriter(mosquitto.port, properties) as broker:
        config = gateway_config(mosquitto, certs)
        config.upstream_port = broker.port
        async with Gateway(config) as gateway, Client(client_config(
                gateway, certs, transport=transport, protocol_version=5)) as client:
            assert not client.server_limits.wildcard_subscription_available
            cases: list[tuple[str, dict[str, Any] | None, int]] = [
                (f"{topic_root}/+/t", None, 0xA2), (f"{topic_root}/#", None, 0xA2),
                (f"$share/g/{topic_root}/t", None, 0x9E),
                (f"{topic_root}/t", {"subscription_identifier": 5}, 0xA1)]
            for topic_filter, props, code in cases:
                with pytest.raises(SubscribeFailed) as refused:
                    await client.subscribe(topic_filter, qos=1, properties=props)
                assert refused.value.reason_code == code
            # What it supports still works, on the same connection.
            assert await client.subscribe(f"{topic_root}/t", qos=1) == [1]
            await client.publish(f"{topic_root}/t", b"plain", qos=1)
            [message] = await collect(client.messages(), 1, timeout=5)
            assert message.payload == b"plain"
            assert client.get_stats()["reconnect_count"] == 0
        assert broker.rewritten >= 1


@pytest.mark.parametrize("transport", ["quic", "tcp"])
@pytest.mark.parametrize("version", [4, 5])
async def test_many_qos2_publishes_at_once_are_all_delivered(
        gateway: Gateway, certs: CertificateFiles, topic_root: str, transport: str,
        version: int) -> None:
    # mosquitto takes at most 20 QoS 2 messages in flight from one client (its
    # max_inflight_messages); beyond, it answers PUBREC and drops the message, silently
    # under MQTT 3.1.1, which has no Receive Maximum to tell the client.
    async with Client(client_config(gateway, certs, transport="quic")) as subscriber:
        await subscriber.subscribe(f"{topic_root}/#", qos=2)
        async with Client(client_config(gateway, certs, transport=transport,
                                        protocol_version=version)) as publisher:
            await asyncio.gather(*(publisher.publish(f"{topic_root}/q2", str(i), qos=2)
                                   for i in range(60)))
        got = await collect(subscriber.messages(), 60, timeout=10)
        assert sorted(int(m.payload) for m in got) == list(range(60))
