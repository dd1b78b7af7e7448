"""TCP+TLS fallback, racing connect, reconnect, 0-RTT resumption: real parts, real failures."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.config import TransportType
from mqttquic.errors import ConnectError, ConnectionRefused, OfflineQueueFull
from mqttquic.gateway import Gateway
from mqttquic.message import Message

from .brokers import FaultyProxy, Mosquitto, free_port
from .conftest import client_config, gateway_config
from .test_quic import collect, count_payloads
from .waits import eventually

VERSIONS = pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A UDP port that takes every datagram and answers none: QUIC blocked in the network."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
async def tls_only_gateway(gateways: Any, mosquitto: Mosquitto) -> Gateway:
    gateway: Gateway = await gateways(mosquitto, quic_port=None)
    return gateway


@VERSIONS
async def test_tcp_tls_transport(gateway: Gateway, certs: CertificateFiles, topic_root: str,
                                 version: int) -> None:
    config = client_config(gateway, certs, transport="tcp", protocol_version=version)
    async with Client(config) as client:
        assert client.transport_type is TransportType.TCP_TLS
        assert await client.subscribe(f"{topic_root}/#", qos=2) == [2]
        for qos in (0, 1, 2):
            await client.publish(f"{topic_root}/q{qos}", f"p{qos}", qos=qos)
        got = await collect(client.messages(), 3, linger=0.3)
        assert sorted((m.topic, m.payload, m.qos) for m in got) == [
            (f"{topic_root}/q{q}", f"p{q}".encode(), q) for q in (0, 1, 2)]
        results = await client.publish_parallel(
            [{"topic": f"{topic_root}/par/{i}", "payload": b"x", "qos": 1} for i in range(20)])
        assert all(results.values()) and len(results) == 20
        stats = client.get_stats()
        assert stats["transport"] == "tcp_tls" and stats["connected"]
        assert stats["bytes_sent"] > 0 and stats["bytes_received"] > 0
        assert stats["streams_open"] == 1
        assert await client.unsubscribe(f"{topic_root}/#") in ([], [0])


@pytest.mark.parametrize("transport", ["quic", "tcp"])
async def test_mqtt5_properties_arrive_on_both_transports(gateway: Gateway, certs: CertificateFiles,
                                                         topic_root: str, transport: str) -> None:
    config = client_config(gateway, certs, transport=transport, protocol_version=5)
    props = {"content_type": "application/json", "message_expiry_interval": 60,
             "user_property": [("unit", "celsius"), ("unit", "kelvin")]}
    async with Client(config) as client:
        await client.subscribe(f"{topic_root}/p", qos=1)
        await client.publish(f"{topic_root}/p", {"t": 21}, qos=1, properties=props)
        [message] = await collect(client.messages(), 1)
        assert message.json() == {"t": 21}
        assert message.properties["content_type"] == "application/json"
        assert message.properties["user_property"] == [("unit", "celsius"), ("unit", "kelvin")]
        assert 0 < message.properties["message_expiry_interval"] <= 60


async def test_one_client_reconnects_after_disconnect_on_either_transport(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    client = Client(client_config(gateway, certs))
    for connect, kind in ((client.connect_tcp_fallback, "tcp_tls"), (client.connect_quic, "quic"),
                          (client.connect, "quic")):
        await connect()
        assert client.get_stats()["transport"] == kind
        await client.publish(f"{topic_root}/again", b"x", qos=1)
        await client.disconnect()
        with pytest.raises(ConnectError, match="disconnected"):
            await client.publish(f"{topic_root}/again", b"x", qos=1)
    assert client.get_stats()["messages_sent"] == 3


async def test_tcp_to_mosquittos_own_tls_listener(tmp_path: Path, certs: CertificateFiles,
                                                  topic_root: str) -> None:
    broker = Mosquitto(tmp_path / "tls-broker", tls=(certs.cert_file, certs.key_file)).start()
    try:
        config = client_config(type("G", (), {"quic_port": free_port(socket.SOCK_DGRAM),
                                              "tcp_port": broker.tls_port})(), certs,
                               transport="tcp")
        async with Client(config) as client:
            await client.subscribe(f"{topic_root}/t", qos=1)
            await client.publish(f"{topic_root}/t", b"over mosquitto's TLS", qos=1)
            [message] = await collect(client.messages(), 1)
            assert message.payload == b"over mosquitto's TLS"
    finally:
        broker.stop()


async def test_blocked_udp_falls_back_to_tcp_within_the_head_start(
        gateway: Gateway, certs: CertificateFiles, black_hole: int,
        caplog: pytest.LogCaptureFixture) -> None:
    config = client_config(gateway, certs, quic_port=black_hole, connect_timeout=10,
                           quic_probe_interval=0)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="mqttquic"):
        async with Client(config) as client:
            elapsed = time.monotonic() - started
            assert client.transport_type is TransportType.TCP_TLS
            assert client.get_stats()["transport"] == "tcp_tls"
    # Head start 0.25 s + a loopback TCP+TLS handshake, about 0.3 s: the bound only has to
    # show that the 10 s QUIC timeout was not waited for, with room for a loaded machine.
    assert elapsed < 5.0, elapsed
    assert "using TCP+TLS, not QUIC" in caplog.text


async def test_both_transports_failing_names_both_causes(certs: CertificateFiles,
                                                         black_hole: int) -> None:
    closed_tcp = free_port()
    config = client_config(type("G", (), {"quic_port": black_hole, "tcp_port": closed_tcp})(),
                           certs, connect_timeout=1.0)
    with pytest.raises(ConnectError) as info:
        await Client(config).connect()
    message = str(info.value)
    assert "both transports failed" in message
    assert "QUIC:" in message and "timed out" in message
    assert "TCP+TLS:" in message and ("refused" in message.lower() or "Errno" in message)


async def test_wrong_ca_on_both_transports(gateway: Gateway, certs: CertificateFiles,
                                           other_ca: CertificateFiles) -> None:
    config = client_config(gateway, certs, ca_file=str(other_ca.ca_file))
    with pytest.raises(ConnectError, match="(?s)certificate.*TCP\\+TLS.*certificate"):
        await Client(config).connect()


@VERSIONS
async def test_bad_password_one_attempt_no_retry(auth_gateway: Gateway, certs: CertificateFiles,
                                                 version: int) -> None:
    # A long head start: this test counts attempts, so TCP must not join the race.
    config = client_config(auth_gateway, certs, username="device", password="wrong",
                           protocol_version=version, reconnect_min_delay=0.01, head_start=5.0)
    client = Client(config)
    with pytest.raises(ConnectionRefused):
        await client.connect()
    # 1 s, twice the head start: a TCP+TLS attempt racing the refused one would be in.
    await asyncio.sleep(1.0)
    assert (auth_gateway.quic_connections, auth_gateway.tcp_connections) == (1, 0)
    assert not client.is_connected


async def test_fallback_moves_back_to_quic_when_it_comes_up(
        mosquitto: Mosquitto, certs: CertificateFiles, tls_only_gateway: Gateway,
        topic_root: str) -> None:
    quic_port = free_port(socket.SOCK_DGRAM)
    config = client_config(tls_only_gateway, certs, quic_port=quic_port, quic_probe_interval=0.3)
    changes: list[Any] = []
    async with Client(config, on_connect=changes.append) as client:
        assert client.transport_type is TransportType.TCP_TLS
        assert changes[-1].fallback and not changes[-1].moved
        await client.subscribe(f"{topic_root}/t", qos=1)
        quic_config = gateway_config(mosquitto, certs)
        quic_config.quic_port, quic_config.tcp_port = quic_port, None
        async with Gateway(quic_config):
            await eventually(lambda: client.transport_type is TransportType.QUIC, 10)
            assert client.transport_type is TransportType.QUIC
            assert client.get_stats()["transport"] == "quic"
            # The subscription came along: a message sent by another client arrives.
            other = client_config(tls_only_gateway, certs, transport="tcp")
            async with Client(other) as sender:
                await sender.publish(f"{topic_root}/t", b"after the move", qos=1)
            got = await collect(client.messages(), 1)
            assert got[-1].payload == b"after the move"
            assert got[-1].stream_id != 0  # on a QUIC data stream
            # on_connect saw the move: planned, no reconnect, no longer a fallback.
            assert [c.transport for c in changes] == [TransportType.TCP_TLS, TransportType.QUIC]
            assert changes[-1].moved and not changes[-1].reconnected and not changes[-1].fallback


async def test_moving_back_to_quic_loses_no_message_and_is_no_reconnect(
        mosquitto: Mosquitto, certs: CertificateFiles, tls_only_gateway: Gateway,
        topic_root: str, caplog: pytest.LogCaptureFixture) -> None:
    # The probe's CONNECT carries the client id of the TCP+TLS session, so the broker drops
    # that session. It was taken for a lost connection, and the reconnect that followed
    # kicked the new QUIC connection in turn.
    quic_port = free_port(socket.SOCK_DGRAM)
    config = client_config(tls_only_gateway, certs, quic_port=quic_port, quic_probe_interval=0.2,
                           client_id=f"mover-{topic_root[-6:]}", clean_start=False,
                           multi_stream=False)
    total = 300
    seen: set[str] = set()
    async with Client(config) as mover, \
            Client(client_config(tls_only_gateway, certs, transport="tcp")) as other:
        assert mover.transport_type is TransportType.TCP_TLS
        await mover.subscribe(f"{topic_root}/#", qos=1)

        async def count() -> None:
            async for message in mover.messages():
                seen.add(message.topic.rsplit("/", 1)[-1] + message.payload.decode())
                if len(seen) == 2 * total:
                    return

        async def send(client: Client, name: str) -> None:
            for i in range(total):
                await client.publish(f"{topic_root}/{name}", str(i), qos=1)
                await asyncio.sleep(0.002)

        counter = asyncio.ensure_future(count())
        senders = asyncio.gather(send(mover, "mover"), send(other, "other"))
        await asyncio.sleep(0.1)
        quic_config = gateway_config(mosquitto, certs)
        quic_config.quic_port, quic_config.tcp_port = quic_port, None
        with caplog.at_level(logging.INFO, logger="mqttquic.client"):
            async with Gateway(quic_config):
                await asyncio.wait_for(senders, 30)
                await asyncio.wait([counter], timeout=10)
                counter.cancel()
                assert mover.transport_type is TransportType.QUIC
        missing = {f"{name}{i}" for name in ("mover", "other") for i in range(total)} - seen
        assert not missing, f"{len(missing)} never arrived: {sorted(missing)[:10]}"
        assert mover.get_stats()["reconnect_count"] == 0
        assert "moving from TCP+TLS to QUIC" in caplog.text
        assert not [r for r in caplog.records if "reconnecting" in r.getMessage()]
        assert "never retrieved" not in caplog.text


async def test_zero_rtt_resumption_and_ticket_file(gateway: Gateway, certs: CertificateFiles,
                                                   tmp_path: Path) -> None:
    ticket_file = tmp_path / "tickets" / ".mqtt_session_ticket"
    config = client_config(gateway, certs, session_ticket_file=str(ticket_file))
    async with Client(config) as first:
        stats = first.get_stats()
        assert not stats["session_resumed"] and not stats["zero_rtt_used"]
        await eventually(lambda: ticket_file.exists(), 1)  # the ticket arrives just after the handshake
    assert stat.S_IMODE(ticket_file.stat().st_mode) == 0o600
    async with Client(config) as second:
        stats = second.get_stats()
        assert stats["session_resumed"] and stats["zero_rtt_used"]
        assert second.connect_history[0]["zero_rtt_used"] is True
        await second.publish("zero/rtt", b"works", qos=1)

    ticket_file.write_text("{ this is not a ticket")
    async with Client(config) as third:
        stats = third.get_stats()
        assert not stats["session_resumed"] and not stats["zero_rtt_used"]
        await third.publish("zero/rtt", b"after a corrupt ticket file", qos=1)
    assert json.loads(ticket_file.read_text())["version"] == 1  # replaced by a good one


async def test_qos0_messages_ride_in_the_0rtt_flight_when_asked(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path, topic_root: str) -> None:
    ticket_file = tmp_path / "tickets"
    config = client_config(gateway, certs, session_ticket_file=str(ticket_file))
    async with Client(client_config(gateway, certs)) as subscriber:
        await subscriber.subscribe(f"{topic_root}/#", qos=0)
        async with Client(config):
            await eventually(lambda: ticket_file.exists(), 1)
        device = Client(config)
        with pytest.raises(ValueError, match="only QoS 0"):
            await device.connect(early_messages=[{"topic": "t", "payload": b"", "qos": 1}])
        await device.connect(early_messages=[
            {"topic": f"{topic_root}/reading", "payload": {"celsius": 20.5}},
            {"topic": f"{topic_root}/status", "payload": "awake"}])
        try:
            stats = device.get_stats()
            assert stats["zero_rtt_used"] and stats["messages_sent"] == 2
        finally:
            await device.disconnect()
        got = await collect(subscriber.messages(), 2)
        assert sorted(m.payload for m in got) == [b"awake", b'{"celsius":20.5}']


async def test_rejected_ticket_falls_back_to_a_full_handshake(
        mosquitto: Mosquitto, certs: CertificateFiles, tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    gw_config = gateway_config(mosquitto, certs)
    gw_config.quic_port = port
    ticket_file = tmp_path / "tickets"
    async with Gateway(gw_config) as gw:
        config = client_config(gw, certs, session_ticket_file=str(ticket_file))
        async with Client(config):
            await eventually(ticket_file.exists, 5)
    assert ticket_file.exists()
    # A new gateway on the same port knows nothing of that ticket: 0-RTT is rejected.
    async with Gateway(gw_config) as gw:
        async with Client(client_config(gw, certs, session_ticket_file=str(ticket_file))) as client:
            stats = client.get_stats()
            assert stats["transport"] == "quic"
            assert not stats["zero_rtt_used"]
            await client.publish("rejected/0rtt", b"still delivered", qos=1)


async def test_publishes_wait_while_offline_in_a_bounded_queue(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str) -> None:
    gw_config = gateway_config(mosquitto, certs)
    gw_config.quic_port = free_port(socket.SOCK_DGRAM)
    gw_config.tcp_port = free_port()
    gateway = await Gateway(gw_config).__aenter__()
    config = client_config(gateway, certs, max_offline_queue=2, reconnect_min_delay=0.05,
                           reconnect_max_delay=0.2, connect_timeout=1.0)
    async with Client(config) as client:
        await client.subscribe(f"{topic_root}/q", qos=1)
        await gateway.stop()
        await eventually(lambda: not client.is_connected, 5)
        waiting = [asyncio.ensure_future(client.publish(f"{topic_root}/q", f"m{i}", qos=1))
                   for i in range(2)]
        await eventually(lambda: client._connector.policy.offline_waiting == 2, 5)
        with pytest.raises(OfflineQueueFull):
            await client.publish(f"{topic_root}/q", b"one too many", qos=1)
        assert not any(task.done() for task in waiting)
        gateway = await Gateway(gw_config).__aenter__()
        try:
            await asyncio.wait_for(asyncio.gather(*waiting), 20)
            got = await collect(client.messages(), 2)
            assert sorted(m.payload for m in got) == [b"m0", b"m1"]
            assert client.get_stats()["reconnect_count"] >= 1
        finally:
            await gateway.stop()


async def test_malformed_packet_from_the_broker_closes_and_reconnects(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str,
        caplog: pytest.LogCaptureFixture) -> None:
    proxy = await FaultyProxy(mosquitto.port).start()
    gw_config = gateway_config(mosquitto, certs)
    gw_config.upstream_port = proxy.port
    try:
        async with Gateway(gw_config) as gateway:
            config = client_config(gateway, certs, multi_stream=False, reconnect_min_delay=0.05)
            with caplog.at_level(logging.WARNING, logger="mqttquic"):
                async with Client(config) as client:
                    await client.subscribe(f"{topic_root}/t", qos=1)
                    proxy.inject(b"\x30\x03\x00\x01#")  # a PUBLISH to a wildcard topic
                    await eventually(lambda: client.get_stats()["reconnect_count"] == 1
                                     and client.is_connected, 5)
                    assert client.get_stats()["reconnect_count"] == 1
                    await asyncio.sleep(0.2)  # subscriptions restored after the reconnect
                    await client.publish(f"{topic_root}/t", b"after", qos=1)
                    got = await collect(client.messages(), 1)
                    assert got[-1].payload == b"after"
            assert "malformed packet from the broker" in caplog.text
            assert "[MQTT-3.3.2-2]" in caplog.text
    finally:
        await proxy.stop()


def test_without_aioquic_the_client_uses_tcp_only(certs: CertificateFiles, tmp_path: Path,
                                                  mosquitto: Mosquitto) -> None:
    async def run() -> str:
        config = gateway_config(mosquitto, certs)
        config.quic_port = None
        async with Gateway(config) as gw:
            settings = {"host": "127.0.0.1", "tcp_port": gw.tcp_port, "ca_file": str(certs.ca_file),
                        "server_name": "localhost", "device_id": f"noquic-{uuid.uuid4().hex[:6]}"}
            code = (
                "import sys, asyncio, logging, json\n"
                "sys.modules['aioquic'] = None  # as if it were not installed\n"
                "logging.basicConfig(level=logging.WARNING)\n"
                "from mqttquic import Client, ConnectionConfig\n"
                f"config = ConnectionConfig(**json.loads({json.dumps(json.dumps(settings))}))\n"
                "async def main():\n"
                "    async with Client(config) as c:\n"
                "        await c.publish('no/quic', b'x', qos=1)\n"
                "        print('TRANSPORT', c.get_stats()['transport'])\n"
                "asyncio.run(main())\n")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=dict(os.environ))
            out, _ = await asyncio.wait_for(process.communicate(), 60)
            return out.decode()

    output = asyncio.run(run())
    assert "TRANSPORT tcp_tls" in output, output
    assert "aioquic is not installed" in output


async def test_broker_restart_loses_no_qos1_message(tmp_path: Path, certs: CertificateFiles) -> None:
    broker = Mosquitto(tmp_path / "persistent", persistence=True).start()
    root = f"restart/{uuid.uuid4().hex[:6]}"
    total = 2000
    try:
        gw_config = gateway_config(broker, certs)
        async with Gateway(gw_config) as gateway:
            common = dict(reconnect_min_delay=0.05, reconnect_max_delay=0.5, connect_timeout=2.0,
                          keepalive=5)
            sub_config = client_config(gateway, certs, client_id=f"sub-{root[-6:]}",
                                       clean_start=False, multi_stream=False, **common)
            pub_config = client_config(gateway, certs, **common)
            async with Client(sub_config) as subscriber, Client(pub_config) as publisher:
                await subscriber.subscribe(f"{root}/#", qos=1)
                seen: set[int] = set()

                counter = asyncio.ensure_future(count_payloads(subscriber.messages(), seen, total))

                async def send() -> None:
                    for i in range(total):
                        await publisher.publish(f"{root}/n", str(i), qos=1)
                        if i % 20 == 0:
                            await asyncio.sleep(0.01)

                sender = asyncio.ensure_future(send())
                await eventually(lambda: len(seen) >= total // 4, 30)  # at most 30 s
                broker.stop()
                await asyncio.sleep(0.5)
                broker.start()
                await asyncio.wait_for(sender, 60)
                await asyncio.wait([counter], timeout=60)
                counter.cancel()
                missing = sorted(set(range(total)) - seen)
                assert not missing, f"{len(missing)} never arrived: {missing[:20]}"
                assert seen == set(range(total))
                assert publisher.get_stats()["reconnect_count"] >= 1
                assert subscriber.get_stats()["reconnect_count"] >= 1
                assert subscriber.is_connected and publisher.is_connected
    finally:
        broker.stop()


@pytest.mark.parametrize("transport", ["quic", "tcp"])
async def test_messages_queued_for_a_persistent_session_arrive_behind_connack(
        gateway: Gateway, certs: CertificateFiles, topic_root: str, transport: str) -> None:
    # The broker sends them right behind CONNACK, before the client has attached its
    # handlers to the new connection; they were acknowledged and then dropped.
    config = client_config(gateway, certs, client_id=f"queued-{topic_root[-6:]}",
                           clean_start=False, multi_stream=False, transport=transport)
    async with Client(config) as subscriber:
        await subscriber.subscribe(f"{topic_root}/#", qos=1)
    async with Client(client_config(gateway, certs)) as publisher:
        for i in range(50):
            await publisher.publish(f"{topic_root}/q", str(i), qos=1)
    async with Client(config) as subscriber:
        got = await collect(subscriber.messages(), 50, linger=0.3)
        assert subscriber.get_stats()["transport"] == ("quic" if transport == "quic" else "tcp_tls")
    assert sorted(int(m.payload) for m in got) == list(range(50))


def _message(m: Message) -> tuple[str, bytes]:
    return m.topic, m.payload


@pytest.mark.parametrize("multi_stream", [False, True], ids=["single-stream", "multi-stream"])
async def test_qos2_flow_continues_after_a_cut_between_pubrec_and_pubcomp(
        mosquitto: Mosquitto, certs: CertificateFiles, gateway: Gateway, topic_root: str,
        caplog: pytest.LogCaptureFixture, multi_stream: bool) -> None:
    # With clean_start=False a QoS 2 publish rides the control stream even in the default
    # multi-stream mode: EMQX data streams are clean sessions, which would forget the flow.
    proxy = await FaultyProxy(mosquitto.port).start()
    gw_config = gateway_config(mosquitto, certs)
    gw_config.upstream_port = proxy.port
    try:
        async with Gateway(gw_config) as cut_gateway, \
                Client(client_config(gateway, certs)) as subscriber:
            await subscriber.subscribe(f"{topic_root}/q2", qos=2)
            config = client_config(cut_gateway, certs, client_id=f"q2-{topic_root[-6:]}",
                                   clean_start=False, multi_stream=multi_stream,
                                   reconnect_min_delay=0.05, transport="quic")
            async with Client(config) as publisher:
                proxy.cut_after = 0x50  # the connection dies right after the broker's PUBREC
                with caplog.at_level(logging.INFO, logger="mqttquic.session"):
                    await asyncio.wait_for(
                        publisher.publish(f"{topic_root}/q2", b"exactly once", qos=2), 20)
                assert publisher.get_stats()["reconnect_count"] == 1
                assert "resumed 1 unfinished QoS 1/2 flows (session present: True)" in caplog.text
            got = await collect(subscriber.messages(), 1, linger=1.0)
            assert [m.payload for m in got] == [b"exactly once"]
    finally:
        await proxy.stop()


async def test_a_loop_without_add_reader_gets_a_clear_error(
        monkeypatch: pytest.MonkeyPatch, gateway: Gateway, certs: CertificateFiles) -> None:
    """Windows' default ProactorEventLoop has no add_reader: say so, do not fail later."""
    from mqttquic.transports.tcp import connect_tcp

    monkeypatch.setattr(asyncio, "ProactorEventLoop", type(asyncio.get_running_loop()),
                        raising=False)
    with pytest.raises(ConnectError, match="WindowsSelectorEventLoopPolicy"):
        await connect_tcp(client_config(gateway, certs, transport="tcp"))
