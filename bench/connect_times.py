"""Time from starting to connect to CONNACK, per transport, in one run.

    python bench/connect_times.py [--rounds 30] [--delay-ms 0]

Full QUIC handshake, QUIC resumed with a session ticket (CONNECT as 0-RTT
data), and TCP+TLS through paho-mqtt, each to the gateway in front of the same
mosquitto on loopback. Medians and p90 over the rounds, in milliseconds.

On bare loopback the round trip is ~0.05 ms, so the times are CPU. With
``--delay-ms D`` the clients reach the gateway through userland relays that hold
every UDP datagram and TCP chunk D ms each way (RTT = 2 x D), which shows the
round trips each handshake costs: QUIC 2 RTT, QUIC 0-RTT 1 RTT, TCP+TLS 1.3 3 RTT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from delay_link import TcpDelayRelay, UdpDelayRelay

from mqttquic import Client, ConnectionConfig
from mqttquic.brokers import embedded_broker
from mqttquic.gateway import Gateway, GatewayConfig


async def measure(gateway: Gateway, rounds: int, quic_port: int,
                  tcp_port: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="connect-times-"))
    results: dict[str, list[float]] = {"QUIC full handshake": [], "QUIC 0-RTT resumed": [],
                                       "TCP+TLS (paho)": []}

    def config(name: str, **extra: object) -> ConnectionConfig:
        return ConnectionConfig(host="127.0.0.1", quic_port=quic_port,
                                tcp_port=tcp_port, ca_file=gateway.ca_file,
                                server_name="localhost", device_id=f"{name}-{uuid.uuid4().hex[:6]}",
                                **extra)  # type: ignore[arg-type]

    # A subscriber on the gateway directly (no delay) sees when a reading lands.
    subscriber = Client(ConnectionConfig(host="127.0.0.1", quic_port=gateway.quic_port,
                                         ca_file=gateway.ca_file, server_name="localhost",
                                         device_id=f"watch-{uuid.uuid4().hex[:6]}"))
    await subscriber.connect()
    await subscriber.subscribe("bench/reading/#")
    arrivals = subscriber.messages()
    results["reading: 0-RTT, sent behind CONNECT"] = []
    results["reading: 0-RTT, sent after CONNACK"] = []

    async def reading_delivered(tickets: Path, early: bool) -> float:
        topic = f"bench/reading/{uuid.uuid4().hex[:8]}"
        device = Client(config("reading", transport="quic", session_ticket_file=str(tickets)))
        start = time.perf_counter()
        if early:
            await device.connect(early_messages=[{"topic": topic, "payload": b"21.5"}])
        else:
            await device.connect()
            await device.publish(topic, b"21.5")
        async for message in arrivals:
            if message.topic == topic:
                break
        elapsed = time.perf_counter() - start
        zero_rtt = device.get_stats()["zero_rtt_used"]
        await asyncio.sleep(0.2)  # the next single-use ticket arrives one round trip later
        await device.disconnect()
        assert zero_rtt, "0-RTT was not used"
        return elapsed

    for i in range(rounds):
        tickets = folder / f"tickets-{i}"
        async with Client(config("full", transport="quic", session_ticket_file=str(tickets))) as c:
            stats = c.get_stats()
            assert not stats["session_resumed"]
            results["QUIC full handshake"].append(stats["connect_time"])
            for _ in range(50):
                if tickets.exists():
                    break
                await asyncio.sleep(0.01)
        async with Client(config("resumed", transport="quic",
                                 session_ticket_file=str(tickets))) as c:
            stats = c.get_stats()
            assert stats["zero_rtt_used"], "0-RTT was not used"
            results["QUIC 0-RTT resumed"].append(stats["connect_time"])
            await asyncio.sleep(0.2)  # keep the new ticket for the next rows
        async with Client(config("tcp", transport="tcp", zero_rtt=False)) as c:
            results["TCP+TLS (paho)"].append(c.get_stats()["connect_time"])
        for early in (True, False):
            name = "reading: 0-RTT, sent behind CONNECT" if early else \
                "reading: 0-RTT, sent after CONNACK"
            results[name].append(await reading_delivered(tickets, early))
    await subscriber.disconnect()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay of the link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    async with embedded_broker("mosquitto") as (description, port):
        async with Gateway(GatewayConfig(upstream_port=port, quic_port=0, tcp_port=0)) as gateway:
            quic_port, tcp_port = gateway.quic_port, gateway.tcp_port
            relays: list[UdpDelayRelay | TcpDelayRelay] = []
            if args.delay_ms:
                delay = args.delay_ms / 1000
                udp = UdpDelayRelay(("127.0.0.1", gateway.quic_port), delay)
                tcp = TcpDelayRelay(("127.0.0.1", gateway.tcp_port), delay)
                quic_port, tcp_port = await udp.start(), await tcp.start()
                relays = [udp, tcp]
            try:
                results = await measure(gateway, args.rounds, quic_port, tcp_port)
            finally:
                for relay in relays:
                    relay.close()
    link = f"{args.delay_ms:g} ms each way (RTT {2 * args.delay_ms:g} ms)" if args.delay_ms \
        else "bare loopback"
    print(f"connect to CONNACK, {args.rounds} rounds each, {link}, gateway -> {description}")
    print("(the 'reading' rows: from connect() to a QoS 0 reading at a subscriber)")
    print(f"{'':38} {'median ms':>10} {'p90 ms':>10} {'min ms':>10}")
    for name, samples in results.items():
        ordered = sorted(samples)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        print(f"{name:38} {statistics.median(samples) * 1000:10.2f} {p90 * 1000:10.2f}"
              f" {ordered[0] * 1000:10.2f}")


if __name__ == "__main__":
    asyncio.run(main())
