"""The gateway against hostile and careless clients, hardened brokers and its own restarts:
real QUIC clients written with aioquic, real mosquitto."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.client import connect as quic_connect
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from mqttquic import codec
from mqttquic._aioquic import unacknowledged_bytes
from mqttquic._mqtt_quic import AppError
from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.codec import Connack, Connect, Publish, Suback, Subscribe, Subscription
from mqttquic.errors import ConnectError
from mqttquic.gateway import Gateway

from .brokers import Mosquitto, free_port
from .conftest import client_config, gateway_config
from .test_quic import RawQuic, collect, raw_configuration
from .test_reliability import gateway_process
from .waits import eventually, holds_within


class Raw(RawQuic):
    """RawQuic that also notes the end of the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terminated: ConnectionTerminated | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            self.arrived.set()
        super().quic_event_received(event)

    def finish(self, stream_id: int) -> None:
        self._quic.send_stream_data(stream_id, b"", end_stream=True)
        self.transmit()


def _drained(raw: Any, stream_id: int) -> bool:
    """Whether a stream of ``raw`` holds less than 1 MiB unacknowledged (or ended)."""
    return (unacknowledged_bytes(raw._quic, stream_id) < 1024 * 1024
            or raw.terminated is not None or stream_id in raw.resets)


@asynccontextmanager
async def raw_client(port: int, certs: CertificateFiles) -> AsyncIterator[Raw]:
    async with quic_connect("127.0.0.1", port, configuration=raw_configuration(certs),
                            create_protocol=Raw) as raw:
        assert isinstance(raw, Raw)
        yield raw


@asynccontextmanager
async def configured_gateway(broker: Mosquitto, certs: CertificateFiles,
                             **settings: Any) -> AsyncIterator[Gateway]:
    config = gateway_config(broker, certs)
    for name, value in settings.items():
        setattr(config, name, value)
    async with Gateway(config) as gateway:
        yield gateway


async def well_behaved_client_works(gateway: Gateway, certs: CertificateFiles, topic: str) -> None:
    async with Client(client_config(gateway, certs, transport="quic")) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"served", qos=1)
        [message] = await collect(client.messages(), 1)
        assert message.payload == b"served"


# --- 1. slots of finished streams ----------------------------------------------------------------

async def test_streams_finished_both_ways_free_their_slots(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    # Before: a finished stream kept its entry, and the 10th data stream of any connection
    # was reset "more than 9 data streams" with none open (10-14 of 14 refused).
    async with raw_client(gateway.quic_port, certs) as raw:
        raw.write(0, codec.encode(Connect(f"slots-{topic_root[-6:]}")))
        assert await raw.packets(0, 1) == [Connack(False, 0)]
        for n in range(1, 15):
            stream_id = 4 * n
            raw.write(stream_id, codec.encode(Subscribe(1, [Subscription(f"{topic_root}/{n}", 1)])))
            assert await raw.packets(stream_id, 1) == [Suback(1, [1])], stream_id
            raw.finish(stream_id)
        assert raw.resets == []
        [connection] = list(gateway._connections)
        await eventually(lambda: len(connection.relays) == 1, 5)  # the control stream


# --- 2. memory --------------------------------------------------------------------------------------

async def test_a_huge_connect_closes_the_connection_at_its_header(
        gateway: Gateway, certs: CertificateFiles) -> None:
    async with raw_client(gateway.quic_port, certs) as raw:
        raw.write(0, b"\x10" + codec.encode_varint(200_000_000) + os.urandom(60_000))
        await eventually(lambda: raw.terminated is not None, 5)
        assert raw.terminated is not None
        assert raw.terminated.error_code == AppError.PACKET_TOO_LARGE
    assert gateway.upstream_connections == 0


async def test_a_publish_above_the_maximum_resets_its_stream_only(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str) -> None:
    async with configured_gateway(mosquitto, certs, max_packet_size=10_000) as gateway:
        async with raw_client(gateway.quic_port, certs) as raw:
            raw.write(0, codec.encode(Connect(f"big-{topic_root[-6:]}")))
            assert await raw.packets(0, 1) == [Connack(False, 0)]
            raw.write(4, codec.encode(Publish(f"{topic_root}/t", bytes(20_000), 1, packet_id=1)))
            await eventually(lambda: raw.resets == [4], 5)
            raw.write(8, codec.encode(Publish(f"{topic_root}/t", bytes(5_000), 1, packet_id=1)))
            assert len(await raw.packets(8, 1)) == 1
            assert raw.terminated is None


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _push_junk(port: int, certs: CertificateFiles, total: int) -> tuple[int, int]:
    """Junk until ``total`` bytes have left this client: a CONNECT announcing 200 MB on the
    control stream, then PUBLISHes of almost 1 MiB of random bytes on data streams of a
    connection that never sends CONNECT. Returns (bytes delivered, connections the
    gateway closed)."""
    junk = os.urandom(256 * 1024)
    big_publish = b"\x30" + codec.encode_varint(1000 * 1024)
    delivered = closed = 0
    while delivered < total:
        async with raw_client(port, certs) as raw:
            if closed % 2 == 0:
                raw.write(0, b"\x10" + codec.encode_varint(200_000_000) + junk)
                delivered += len(junk)
            stream_id = 4
            while delivered < total and raw.terminated is None:
                if stream_id in raw.resets or stream_id == 4:
                    stream_id += 4
                    raw.write(stream_id, big_publish)
                raw.write(stream_id, junk)
                delivered += len(junk)
                # Only as fast as it leaves: wait while the stream's send buffer is full.
                await holds_within(partial(_drained, raw, stream_id), 1.0, every=0.005)
            closed += await holds_within(lambda: raw.terminated is not None, 2)
    return delivered, closed


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
async def test_memory_stays_bounded_while_a_client_pushes_100_mib_of_junk(
        mosquitto: Mosquitto, gateway: Gateway, certs: CertificateFiles, tmp_path: Path,
        topic_root: str) -> None:
    quic_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    process = gateway_process(mosquitto, certs, quic_port, tcp_port, "--reset-key-file", "off")
    try:
        target = type("G", (), {"quic_port": quic_port, "tcp_port": tcp_port})()
        await well_behaved_client_works(target, certs, f"{topic_root}/before")  # warm
        baseline = peak = _rss(process.pid)

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, _rss(process.pid))
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch())
        try:
            delivered, closed = await asyncio.wait_for(
                _push_junk(quic_port, certs, 100 * 1024 * 1024), 90)
        finally:
            watcher.cancel()
        growth = peak - baseline
        print(f"gateway RSS {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB while"
              f" {delivered / 2**20:.0f} MiB of junk came in; {closed} connections closed by it")
        # Bounded: 14-17 MiB here for 100 MiB of junk (the per-connection buffers and
        # the allocator's arenas); a bound of 16 MiB failed now and then.
        assert growth < 24 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
        assert closed >= 1
        await well_behaved_client_works(target, certs, f"{topic_root}/after")
    finally:
        process.kill()
        process.wait(5)


# --- 3. deadlines and caps -------------------------------------------------------------------------

async def test_slowloris_connections_are_closed_at_the_connect_deadline_holding_nothing(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str) -> None:
    # Before: 30 clients sending a byte every 3 s were all alive after 60 s, each holding
    # a TCP connection to the broker.
    connect = codec.encode(Connect(f"slow-{topic_root[-6:]}"))
    async with configured_gateway(mosquitto, certs, connect_timeout=1.0) as gateway:
        async def slowloris() -> bool:
            async with raw_client(gateway.quic_port, certs) as raw:
                for i in range(len(connect) - 1):  # never the whole CONNECT
                    raw.write(0, connect[i:i + 1])
                    if await holds_within(lambda: raw.terminated is not None, 0.3):
                        return True
                return False

        started = time.monotonic()
        closed = await asyncio.wait_for(asyncio.gather(*(slowloris() for _ in range(30))), 30)
        assert all(closed)
        assert time.monotonic() - started < 10
        assert gateway.upstream_connections == 0
        assert not gateway._connections
        await well_behaved_client_works(gateway, certs, f"{topic_root}/ok")


async def test_data_streams_before_a_connect_that_never_comes_are_dropped_at_the_deadline(
        mosquitto: Mosquitto, certs: CertificateFiles) -> None:
    async with configured_gateway(mosquitto, certs, connect_timeout=1.0) as gateway:
        async with raw_client(gateway.quic_port, certs) as raw:
            for n in range(1, 10):
                raw.write(4 * n, bytes(100_000))
            [connection] = list(gateway._connections)
            await eventually(lambda: connection.buffered() > 800_000, 5)
            await eventually(lambda: raw.terminated is not None, 5)
            assert connection.buffered() == 0 and not gateway._connections
        assert gateway.upstream_connections == 0


async def test_connections_beyond_the_cap_are_refused_and_served_again_later(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async with configured_gateway(mosquitto, certs, max_connections=2) as gateway:
        config = client_config(gateway, certs, transport="quic", connect_timeout=3)
        first, second = Client(config), Client(client_config(gateway, certs, transport="quic"))
        await first.connect()
        await second.connect()
        with caplog.at_level(logging.DEBUG, logger="mqttquic.gateway"):
            for _ in range(3):
                with pytest.raises(ConnectError):
                    await Client(client_config(gateway, certs, transport="quic",
                                               connect_timeout=3)).connect()
        assert gateway.refused_connections == 3
        assert sum(1 for r in caplog.records
                   if r.levelno >= logging.WARNING and "refusing a QUIC connection" in r.message) == 1
        await first.disconnect()
        # The gateway learns of the disconnect a round trip later (under 1 ms on loopback).
        await asyncio.sleep(0.2)
        await well_behaved_client_works(gateway, certs, f"{topic_root}/again")
        await second.disconnect()


async def test_refused_streams_are_logged_once_per_connection(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Before: 1000 refused streams gave 991 warning lines.
    async with configured_gateway(mosquitto, certs, max_data_streams=1) as gateway:
        with caplog.at_level(logging.INFO, logger="mqttquic.gateway"):
            async with raw_client(gateway.quic_port, certs) as raw:
                raw.write(0, codec.encode(Connect(f"many-{topic_root[-6:]}")))
                await raw.packets(0, 1)
                raw.write(4, codec.encode(Subscribe(1, [Subscription(f"{topic_root}/a", 0)])))
                await raw.packets(4, 1)
                for n in range(2, 202):
                    raw._quic.send_stream_data(4 * n, codec.encode(Publish("x", b"")))
                raw.transmit()
                await eventually(lambda: len(raw.resets) == 200, 5)
            # Any further warning would be logged as the resets go out: all 200 are back.
            await asyncio.sleep(0.2)
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "further ones are counted" in warnings[0]
    assert "200 streams were refused in all" in warnings[1]


# --- 4. hardened brokers -------------------------------------------------------------------------

@pytest.fixture
def hardened_mosquitto(brokers: Any) -> Any:
    return brokers("max_keepalive 10")


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
async def test_data_streams_work_with_a_broker_that_sets_max_keepalive(
        hardened_mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str,
        version: int) -> None:
    # Before: the data stream's upstream CONNECT had keepalive 0, which mosquitto >= 2.0.12
    # with max_keepalive refuses for MQTT 3.1.1. Its keepalive is now 2 s here, kept alive by
    # the gateway's PINGREQs: the idle subscription below outlives 1.5 x that.
    async with configured_gateway(hardened_mosquitto, certs) as gateway:
        config = client_config(gateway, certs, transport="quic", keepalive=2,
                               protocol_version=version)
        # The broker refuses a keepalive above its max_keepalive (2.0.21: an MQTT 3.1.1 CONNECT
        # with "identifier rejected"), so the sender asks for less.
        sender_config = client_config(gateway, certs, keepalive=5)
        async with Client(config) as subscriber, Client(sender_config) as sender:
            assert await subscriber.subscribe(f"{topic_root}/t", qos=1) == [1]
            # 4 s of silence: the data stream's upstream must keep itself alive with the
            # keepalive the broker imposes (max_keepalive 10 means 1.5 x 10 s at most).
            await asyncio.sleep(4)
            await sender.publish(f"{topic_root}/t", b"after a quiet while", qos=1)
            [message] = await collect(subscriber.messages(), 1)
            assert message.payload == b"after a quiet while" and message.stream_id != 0
            assert subscriber.get_stats()["reconnect_count"] == 0


async def test_the_gateways_keepalive_pings_do_not_reach_the_client(
        hardened_mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str) -> None:
    async with configured_gateway(hardened_mosquitto, certs) as gateway:
        async with raw_client(gateway.quic_port, certs) as raw:
            raw.write(0, codec.encode(Connect(f"ping-{topic_root[-6:]}", keepalive=1)))
            await raw.packets(0, 1)
            raw.write(4, codec.encode(Subscribe(1, [Subscription(f"{topic_root}/t", 0)])))
            await raw.packets(4, 1)
            for _ in range(5):  # the client keeps its control stream alive, as it must
                await asyncio.sleep(0.5)
                raw.write(0, codec.encode(codec.Pingreq()))
            assert codec.StreamDecoder().feed(bytes(raw.received[4])) == [Suback(1, [0])]
            [connection] = list(gateway._connections)
            assert connection.relays[4].to_client_framer.dropped >= 2
            # A client's own PINGREQ on a data stream gets its PINGRESP (it was dropped).
            raw.write(4, codec.encode(codec.Pingreq()))
            assert (await raw.packets(4, 2))[1:] == [codec.Pingresp()]


# --- 5. a restarted gateway ------------------------------------------------------------------------

async def test_clients_see_a_restarted_gateway_at_their_next_packet(
        mosquitto: Mosquitto, certs: CertificateFiles, tmp_path: Path, topic_root: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Before: the client noticed only at its keepalive timeout, 1.5 x keepalive (90 s at
    # the defaults). With the key kept across the restart, the new gateway answers the
    # old connection's packets with a stateless reset.
    quic_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    key = ("--reset-key-file", str(tmp_path / "reset.key"))
    process = gateway_process(mosquitto, certs, quic_port, tcp_port, *key)
    try:
        target = type("G", (), {"quic_port": quic_port, "tcp_port": tcp_port})()
        config = client_config(target, certs, transport="quic", keepalive=60,
                               reconnect_min_delay=0.05, reconnect_max_delay=0.2)
        with caplog.at_level(logging.WARNING, logger="mqttquic"):
            async with Client(config) as client:
                await client.publish(f"{topic_root}/t", b"1", qos=1)
                process.send_signal(signal.SIGKILL)
                process.wait(5)
                process = gateway_process(mosquitto, certs, quic_port, tcp_port, *key)
                restarted = time.monotonic()
                await asyncio.wait_for(client.publish(f"{topic_root}/t", b"2", qos=1), 20)
                noticed = time.monotonic() - restarted
                assert client.get_stats()["reconnect_count"] == 1
        assert "stateless reset" in caplog.text
        print(f"the client published again {noticed:.2f} s after the gateway restarted")
        assert noticed < 10  # far below 1.5 x keepalive = 90 s
    finally:
        process.kill()
        process.wait(5)
