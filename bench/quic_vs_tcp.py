"""QUIC through the gateway vs paho-mqtt over plain TCP, to the same mosquitto, in one run.

    python bench/quic_vs_tcp.py [--messages 20000] [--latency-samples 1000]

Measures, on loopback:
- QoS 1 round trip: publish -> PUBACK, one at a time (p50 / p99 / mean, ms)
- QoS 0 messages/s end to end: publisher -> broker -> subscriber, until all arrive
- QoS 1 messages/s: publishes acknowledged per second with up to 100 in flight

mqttquic's path is client -> QUIC -> gateway -> TCP -> mosquitto: one hop more than
paho's client -> TCP -> mosquitto. The gateway runs in a process of its own
(``python -m mqttquic gateway``), as it would in front of a real broker; with
``--in-process`` it shares the client's event loop instead. Needs mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho

from mqttquic import Client, ConnectionConfig
from mqttquic.brokers import embedded_broker, free_port
from mqttquic.certs import generate_certificates
from mqttquic.gateway import Gateway, GatewayConfig

PAYLOAD = b"x" * 32
WINDOW = 100


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": ordered[len(ordered) // 2] * 1000,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "mean": statistics.fmean(samples) * 1000}


async def quic_bench(quic_port: int, ca_file: str, messages: int, samples: int) -> dict[str, Any]:
    def config(name: str) -> ConnectionConfig:
        return ConnectionConfig(host="127.0.0.1", quic_port=quic_port, ca_file=ca_file,
                                server_name="localhost", transport="quic",
                                device_id=f"{name}-{uuid.uuid4().hex[:6]}")

    out: dict[str, Any] = {}
    root = f"bench/{uuid.uuid4().hex[:6]}"
    async with Client(config("pub")) as pub, Client(config("sub")) as sub:
        latencies = []
        for _ in range(samples):
            start = time.perf_counter()
            await pub.publish(f"{root}/lat", PAYLOAD, qos=1)
            latencies.append(time.perf_counter() - start)
        out["latency"] = summary(latencies)

        await sub.subscribe(f"{root}/q0", qos=0)
        received = 0
        done = asyncio.Event()

        async def count() -> None:
            nonlocal received
            async for _ in sub.messages():
                received += 1
                if received >= messages:
                    done.set()
                    return

        counter = asyncio.ensure_future(count())
        start = time.perf_counter()
        for i in range(messages):
            await pub.publish(f"{root}/q0", PAYLOAD)
            if i % 500 == 499:
                await asyncio.sleep(0)  # let the QUIC stack send and receive
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - start
        counter.cancel()
        out["qos0_rate"] = received / elapsed
        out["qos0_delivered"] = received

        start = time.perf_counter()
        for batch in range(0, messages, WINDOW):
            await asyncio.gather(*(pub.publish(f"{root}/q1", PAYLOAD, qos=1)
                                   for _ in range(min(WINDOW, messages - batch))))
        out["qos1_rate"] = messages / (time.perf_counter() - start)
    return out


def paho_bench(port: int, messages: int, samples: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    root = f"bench/{uuid.uuid4().hex[:6]}"

    def client(name: str) -> paho.Client:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}")
        c.max_inflight_messages_set(WINDOW)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        return c

    pub, sub = client("paho-pub"), client("paho-sub")
    try:
        latencies = []
        for _ in range(samples):
            start = time.perf_counter()
            pub.publish(f"{root}/lat", PAYLOAD, qos=1).wait_for_publish(5)
            latencies.append(time.perf_counter() - start)
        out["latency"] = summary(latencies)

        received = 0
        done = threading.Event()
        subscribed = threading.Event()

        def on_message(c: Any, userdata: Any, message: Any) -> None:
            nonlocal received
            received += 1
            if received >= messages:
                done.set()

        sub.on_message = on_message
        sub.on_subscribe = lambda *args: subscribed.set()
        sub.subscribe(f"{root}/q0", qos=0)
        subscribed.wait(5)
        start = time.perf_counter()
        for _ in range(messages):
            pub.publish(f"{root}/q0", PAYLOAD)
        done.wait(60)
        elapsed = time.perf_counter() - start
        out["qos0_rate"] = received / elapsed
        out["qos0_delivered"] = received

        start = time.perf_counter()
        infos = [pub.publish(f"{root}/q1", PAYLOAD, qos=1) for _ in range(messages)]
        for info in infos:
            info.wait_for_publish(30)
        out["qos1_rate"] = messages / (time.perf_counter() - start)
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=1000)
    parser.add_argument("--in-process", action="store_true", help="gateway in this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    async with embedded_broker("mosquitto") as (description, port):
        if args.in_process:
            async with Gateway(GatewayConfig(upstream_port=port, quic_port=0, tcp_port=None)) as gw:
                assert gw.ca_file is not None
                quic = await quic_bench(gw.quic_port, gw.ca_file, args.messages,
                                        args.latency_samples)
        else:
            with tempfile.TemporaryDirectory() as folder:
                certs = generate_certificates(folder)
                quic_port = free_port(socket.SOCK_DGRAM)
                gateway = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "mqttquic", "gateway", "--upstream",
                    f"127.0.0.1:{port}", "--quic", f"127.0.0.1:{quic_port}", "--tcp", "off",
                    "--cert", str(certs.cert_file), "--key", str(certs.key_file),
                    stdout=asyncio.subprocess.PIPE)
                try:
                    assert gateway.stdout is not None
                    await gateway.stdout.readline()  # listening
                    quic = await quic_bench(quic_port, str(certs.ca_file), args.messages,
                                            args.latency_samples)
                finally:
                    gateway.terminate()
                    await gateway.wait()
        tcp = await asyncio.to_thread(paho_bench, port, args.messages, args.latency_samples)
    where = "in the client's process" if args.in_process else "in its own process"
    print(f"broker: {description}; gateway {where}; {args.messages} messages of"
          f" {len(PAYLOAD)} B; {args.latency_samples} latency samples; loopback")
    print(f"{'':34} {'mqttquic QUIC+gateway':>22} {'paho TCP':>12} {'ratio':>8}")
    rows = [
        ("QoS 1 round trip p50 (ms)", quic["latency"]["p50"], tcp["latency"]["p50"], True),
        ("QoS 1 round trip p99 (ms)", quic["latency"]["p99"], tcp["latency"]["p99"], True),
        ("QoS 1 round trip mean (ms)", quic["latency"]["mean"], tcp["latency"]["mean"], True),
        ("QoS 0 msgs/s end to end", quic["qos0_rate"], tcp["qos0_rate"], False),
        ("QoS 1 msgs/s acknowledged", quic["qos1_rate"], tcp["qos1_rate"], False),
    ]
    for label, ours, theirs, lower_is_better in rows:
        ratio = theirs / ours if lower_is_better else ours / theirs
        print(f"{label:34} {ours:22.3f} {theirs:12.3f} {ratio:7.2f}x")
    print(f"QoS 0 delivered: mqttquic {quic['qos0_delivered']}/{args.messages},"
          f" paho {tcp['qos0_delivered']}/{args.messages}")
    print("(ratio > 1: mqttquic better)")


if __name__ == "__main__":
    asyncio.run(main())
