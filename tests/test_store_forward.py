"""Store and forward (``ConnectionConfig(outbox=...)``) against real mosquitto, over
QUIC and TCP+TLS: nothing stored is lost across outages and restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.errors import OperationTimeout
from mqttquic.gateway import Gateway
from mqttquic.outbox import Outbox, OutboxError, OutboxFull

from .conftest import client_config
from .test_quic import collect
from .waits import eventually

TRANSPORTS = pytest.mark.parametrize("transport", ["quic", "tcp"])


async def _subscriber(gateway: Gateway, certs: CertificateFiles, topic_filter: str,
                      qos: int = 1) -> Client:
    subscriber = Client(client_config(gateway, certs, transport="quic"))
    await subscriber.connect()
    await subscriber.subscribe(topic_filter, qos=qos)
    return subscriber


async def _stored_by_a_run_that_never_connects(config: Any,
                                               messages: list[tuple[str, bytes, int]]) -> None:
    """A device that starts offline, enqueues ``(topic, payload, qos)`` and stops."""
    device = Client(config)
    for topic, payload, qos in messages:
        await device.enqueue(topic, payload, qos=qos)
    await device.disconnect()


@TRANSPORTS
async def test_enqueued_while_offline_is_delivered_when_the_gateway_returns(
        gateways: Any, mosquitto: Any, certs: CertificateFiles, tmp_path: Path,
        topic_root: str, transport: str) -> None:
    ours, theirs = await gateways(mosquitto), await gateways(mosquitto)
    subscriber = await _subscriber(theirs, certs, f"{topic_root}/#")
    config = client_config(ours, certs, transport=transport, outbox=str(tmp_path / "o.db"),
                           reconnect_min_delay=0.05, reconnect_max_delay=0.3)
    try:
        async with Client(config) as device:
            await ours.stop()  # the device's gateway goes away
            await eventually(lambda: not device.is_connected, 10)
            for i in range(20):
                await device.enqueue(f"{topic_root}/t", f"m{i}")  # returns at once: stored
            assert device.get_stats()["outbox_stored"] == 20
            await ours.start()
            got = await collect(subscriber.messages(), 20, timeout=30)
            assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)]  # in order
            await eventually(lambda: device.get_stats()["outbox_stored"] == 0, 10)
            # A message cut off max_publish_attempts times counts as failed, though a
            # copy may have reached the broker before its connection went.
            stats = device.get_stats()
            assert stats["outbox_sent"] + stats["outbox_failed"] == 20, stats
    finally:
        await subscriber.disconnect()


async def test_what_one_run_stored_the_next_run_delivers(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path, topic_root: str) -> None:
    subscriber = await _subscriber(gateway, certs, f"{topic_root}/#")
    offline = client_config(gateway, certs, outbox=str(tmp_path / "o.db"))
    try:
        await _stored_by_a_run_that_never_connects(offline, [
            (f"{topic_root}/t", f"r{i}".encode(), 2 if i % 2 else 1) for i in range(5)])
        async with Client(offline) as second:  # the device restarted
            got = await collect(subscriber.messages(), 5, timeout=20)
            assert sorted(m.payload for m in got) == [f"r{i}".encode() for i in range(5)]
            await eventually(lambda: second.get_stats()["outbox_stored"] == 0, 10)
    finally:
        await subscriber.disconnect()


@TRANSPORTS
@pytest.mark.parametrize("version", [4, 5])
async def test_a_qos2_message_released_before_a_restart_is_released_again_not_sent_twice(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path, topic_root: str,
        transport: str, version: int) -> None:
    # The earlier run sent PUBLISH, had PUBREC (recorded), sent PUBREL; the broker
    # delivered the message and answered PUBCOMP, and the device died before it recorded
    # that. The restarted device must send PUBREL again, not the PUBLISH.
    subscriber = await _subscriber(gateway, certs, f"{topic_root}/#", qos=2)
    device = client_config(gateway, certs, transport=transport, clean_start=False,
                           protocol_version=version,
                           session_expiry_interval=600 if version == 5 else None)
    try:
        async with Client(device) as earlier_run:
            await earlier_run.publish(f"{topic_root}/q2", b"once", qos=2)
        [delivered] = await collect(subscriber.messages(), 1, timeout=10)
        assert delivered.payload == b"once"
        path = tmp_path / "o.db"
        box = Outbox(path)  # the outbox as the earlier run left it
        message_id = box.add(f"{topic_root}/q2", b"once", 2)
        box.write([], [], released=[message_id])
        box.close()
        restarted = Client(dataclasses.replace(device, outbox=str(path)))
        async with restarted:
            assert restarted.session_present
            await eventually(lambda: restarted.get_stats()["outbox_stored"] == 0, 10)
            assert restarted.get_stats()["outbox_sent"] == 1
        await asyncio.sleep(0.5)  # a second copy would have arrived by now
        assert subscriber._queue.qsize() == 0
    finally:
        await subscriber.disconnect()


async def test_a_publish_that_times_out_stays_stored_and_is_delivered_later(
        gateways: Any, mosquitto: Any, certs: CertificateFiles, tmp_path: Path,
        topic_root: str) -> None:
    gateway, theirs = await gateways(mosquitto), await gateways(mosquitto)
    subscriber = await _subscriber(theirs, certs, f"{topic_root}/#")
    config = client_config(gateway, certs, outbox=str(tmp_path / "o.db"),
                           reconnect_min_delay=0.05, reconnect_max_delay=0.3)
    try:
        async with Client(config) as device:
            await gateway.stop()
            await eventually(lambda: not device.is_connected, 10)
            with pytest.raises(OperationTimeout, match="stays in the outbox"):
                await device.publish(f"{topic_root}/late", b"kept", qos=1, timeout=0.5)
            assert device.get_stats()["outbox_stored"] == 1
            await gateway.start()
            [message] = await collect(subscriber.messages(), 1, timeout=20)
            assert message.payload == b"kept"
    finally:
        await subscriber.disconnect()


async def test_a_full_outbox_refuses_or_drops_the_oldest(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path, topic_root: str) -> None:
    config = client_config(gateway, certs, outbox=str(tmp_path / "o.db"), outbox_max_messages=3)
    device = Client(config)
    for i in range(3):
        await device.enqueue(f"{topic_root}/t", f"{i}")
    with pytest.raises(OutboxFull, match="outbox_max_messages=3"):
        await device.enqueue(f"{topic_root}/t", b"one too many")
    dropping = Client(dataclasses.replace(config, outbox=str(tmp_path / "d.db"),
                                          outbox_drop_oldest=True))
    for i in range(5):
        await dropping.enqueue(f"{topic_root}/t", f"{i}")
    stats = dropping.get_stats()
    assert (stats["outbox_stored"], stats["outbox_dropped"]) == (3, 2)
    with pytest.raises(ValueError, match="needs a durable outbox"):
        await Client(client_config(gateway, certs)).enqueue("t", b"")
    await device.disconnect()
    await dropping.disconnect()


def test_a_file_that_is_not_an_outbox_is_refused(gateway: Gateway, certs: CertificateFiles,
                                                  tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n" * 100)
    with pytest.raises(OutboxError, match="not an SQLite database"):
        Client(client_config(gateway, certs, outbox=str(notes)))
    assert notes.read_text() == "my notes, not a database\n" * 100


async def test_a_rebooted_device_restores_its_subscriptions(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path, topic_root: str) -> None:
    # MQTT 5, persistent session, but the broker keeps it 0 s: after the "reboot" the
    # session is gone, and the subscription comes back from the outbox file.
    config = client_config(gateway, certs, outbox=str(tmp_path / "o.db"), protocol_version=5,
                           clean_start=False, session_expiry_interval=0,
                           client_id=f"reboot-{topic_root[-6:]}")
    async with Client(config) as device:
        assert await device.subscribe(f"{topic_root}/cmd", qos=1) == [1]
    async with Client(config) as rebooted, Client(client_config(gateway, certs)) as sender:
        assert not rebooted.session_present
        await sender.publish(f"{topic_root}/cmd", b"after the reboot", qos=1)
        [message] = await collect(rebooted.messages(), 1, timeout=10)
        assert message.payload == b"after the reboot"



DEVICE = """
import asyncio, logging, sys
from mqttquic import Client, ConnectionConfig

logging.basicConfig(level=logging.ERROR)  # refused attempts while the gateway is down: quiet

async def main(outbox, tickets, quic_port, tcp_port, ca, transport, topic, run, start, count,
               qos):
    client = Client(ConnectionConfig(
        host="127.0.0.1", quic_port=int(quic_port), tcp_port=int(tcp_port), ca_file=ca,
        server_name="localhost", transport=transport, device_id="kill9-" + topic[-6:],
        clean_start=qos == "1",  # QoS 2: a persistent session, so exactly once holds
        session_ticket_file=tickets, outbox=outbox, connect_timeout=2,
        reconnect_min_delay=0.05, reconnect_max_delay=0.3))

    client.start()  # the device starts offline as often as not: connects when it can
    for i in range(int(start), int(count)):
        await client.enqueue(topic, f"{run}{i}", qos=int(qos))  # each run its own payloads
        print(i, flush=True)  # enqueue() returned: stored
        await asyncio.sleep(0.001)
    while client.get_stats()["outbox_stored"]:
        await asyncio.sleep(0.05)
    print("drained", flush=True)
    await client.disconnect()

asyncio.run(main(*sys.argv[1:]))
"""


@TRANSPORTS
@pytest.mark.parametrize("qos", [1, 2])
async def test_kill_9_while_enqueueing_with_the_gateway_down_half_the_time_loses_nothing(
        gateways: Any, mosquitto: Any, certs: CertificateFiles, tmp_path: Path,
        topic_root: str, transport: str, qos: int) -> None:
    # QoS 1: at least once. QoS 2 with a persistent session: exactly once, because a
    # stored message keeps its packet id and its PUBREC is recorded before PUBREL goes.
    total = 1000
    ours, theirs = await gateways(mosquitto), await gateways(mosquitto)
    subscriber = await _subscriber(theirs, certs, f"{topic_root}/#", qos)
    received: list[bytes] = []

    async def receive() -> None:
        async for message in subscriber.messages():
            received.append(message.payload)

    async def flap(stop: asyncio.Event) -> None:  # down half the time
        while not stop.is_set():
            await asyncio.sleep(0.3)
            await ours.stop()
            await asyncio.sleep(0.3)
            await ours.start()

    def device(run: str, start: int) -> Any:
        return asyncio.create_subprocess_exec(
            sys.executable, "-c", DEVICE, str(tmp_path / "outbox.db"), str(tmp_path / "tickets"),
            str(ours.quic_port), str(ours.tcp_port), str(certs.ca_file), transport,
            f"{topic_root}/t", run, str(start), str(total), str(qos),
            stdout=asyncio.subprocess.PIPE)

    receiving = asyncio.ensure_future(receive())
    stop = asyncio.Event()
    flapping = asyncio.ensure_future(flap(stop))
    try:
        first = await device("a", 0)
        assert first.stdout is not None
        last = -1
        while last < total // 2:  # kill -9 halfway through
            line = await asyncio.wait_for(first.stdout.readline(), 30)
            last = int(line)
        first.kill()
        await first.wait()
        # What it stored before it died (its last lines were still in the pipe).
        last = max([last, *(int(line) for line in (await first.stdout.read()).split())])
        # Restarted: goes on where the first stopped. A message stored in the instant
        # between enqueue() and its line is stored again, with the second run's
        # payload: two messages, not one delivered twice.
        second = await device("b", last + 1)
        assert second.stdout is not None
        while (line := await asyncio.wait_for(second.stdout.readline(), 60)) != b"drained\n":
            assert line, "the restarted device ended before draining its outbox"
        stop.set()
        await flapping
        await second.wait()
        expected = set(range(total))
        await eventually(lambda: expected <= {int(payload[1:]) for payload in received}, 30,
                         what="every message at least once")
        duplicates = len(received) - len(set(received))
        print(f"{transport} QoS {qos}: {total} messages, {duplicates} duplicates, 0 lost")
        if qos == 2:
            assert duplicates == 0
    finally:
        stop.set()
        await asyncio.gather(flapping, return_exceptions=True)
        receiving.cancel()
        await subscriber.disconnect()


async def test_a_backlog_drains_in_order_many_per_round_trip(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path, topic_root: str) -> None:
    subscriber = await _subscriber(gateway, certs, f"{topic_root}/#")
    config = client_config(gateway, certs, outbox=str(tmp_path / "o.db"))
    try:
        await _stored_by_a_run_that_never_connects(config, [  # on two topics
            (f"{topic_root}/{'ab'[i % 2]}", str(i).encode(), 1) for i in range(300)])
        async with Client(config) as device:
            got = await collect(subscriber.messages(), 300, timeout=30)
            for topic in "ab":  # each topic in the order it was stored
                payloads = [int(m.payload) for m in got if m.topic.endswith(f"/{topic}")]
                assert payloads == sorted(payloads) and len(payloads) == 150
            await eventually(lambda: device.get_stats()["outbox_stored"] == 0, 10)
            assert device.get_stats()["outbox_sent"] == 300
    finally:
        await subscriber.disconnect()


@TRANSPORTS
async def test_a_stored_poison_publish_is_given_up_alone_and_the_rest_are_delivered(
        brokers: Any, gateways: Any, certs: CertificateFiles, tmp_path: Path, topic_root: str,
        transport: str) -> None:
    # mosquitto with max_packet_size 1024 drops the connection (MQTT 3.1.1 cannot say
    # why) for the 4,000-byte message: every message in flight with it is cut off too,
    # but only the one that also cuts off connections alone is given up.
    strict = await gateways(brokers("max_packet_size 1024", "max_qos 1"))
    subscriber = await _subscriber(strict, certs, f"{topic_root}/#")
    config = client_config(strict, certs, transport=transport, outbox=str(tmp_path / "o.db"),
                           reconnect_min_delay=0.05, reconnect_max_delay=0.3)
    try:
        device = Client(config)
        for i in range(40):
            await device.enqueue(f"{topic_root}/n", b"x" * 4000 if i == 20 else str(i).encode())
        async with device:
            await eventually(lambda: device.get_stats()["outbox_stored"] == 0, 60)
            stats = device.get_stats()
            assert (stats["outbox_sent"], stats["outbox_failed"]) == (39, 1), stats
        got: set[int] = set()  # at least once: those cut off with it may come twice

        async def receive() -> None:
            async for message in subscriber.messages():
                got.add(int(message.payload))

        receiving = asyncio.ensure_future(receive())
        await eventually(lambda: got == set(range(40)) - {20}, 10, what="all but the poison")
        receiving.cancel()
    finally:
        await subscriber.disconnect()
