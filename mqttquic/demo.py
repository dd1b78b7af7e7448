"""The demo: the reference design's scenario (a device, its telemetry, a command), for real,
on this machine.

An embedded broker, the QUIC gateway in front of it, and two clients: a device
that connects over QUIC, publishes its telemetry on parallel streams and waits
for a command, and an operator that sends the command.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .brokers import embedded_broker
from .client import Client
from .config import ConnectionConfig
from .gateway import Gateway, GatewayConfig

__all__ = ["run_demo"]


def _say(text: str = "") -> None:
    print(text, flush=True)


async def run_demo(broker: str = "auto", device_id: str | None = None) -> int:
    device_id = device_id or f"demo-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mqttquic-demo-") as workdir:
        return await _scenario(broker, device_id, workdir, started)


async def _scenario(broker: str, device_id: str, workdir: str, started: float) -> int:
    async with embedded_broker(broker) as (description, broker_port):
        _say(f"broker   {description} on 127.0.0.1:{broker_port}")
        gateway_config = GatewayConfig(upstream_port=broker_port, quic_port=0, tcp_port=0)
        async with Gateway(gateway_config) as gateway:
            _say(f"gateway  MQTT over QUIC on udp/127.0.0.1:{gateway.quic_port} (ALPN mqtt),"
                 f" TLS TCP on 127.0.0.1:{gateway.tcp_port}")
            _say(f"         throwaway certificate, CA at {gateway.ca_file}")
            config = partial(_config, gateway, Path(workdir) / ".mqtt_session_ticket")
            ok, first_connect = await _telemetry_and_command(config, device_id)
            ok = await _resume(config, device_id, first_connect) and ok
            ok = await _fallback_and_back(gateway, config, device_id) and ok
    _say(f"\nstopped everything; demo took {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


def _config(gateway: Gateway, tickets: Path, client_id: str, **extra: Any) -> ConnectionConfig:
    return ConnectionConfig(host="127.0.0.1", quic_port=gateway.quic_port,
                            tcp_port=gateway.tcp_port, device_id=client_id,
                            ca_file=gateway.ca_file, server_name="localhost", keepalive=30,
                            connect_timeout=10, session_ticket_file=str(tickets), **extra)


async def _telemetry_and_command(config: Callable[..., ConnectionConfig],
                                 device_id: str) -> tuple[bool, float]:
    """1. The device connects over QUIC, publishes on parallel streams and receives a
    command from an operator. Whether all went well, and the connect time."""
    async with Client(config(device_id)) as device:
        stats = device.get_stats()
        _say(f"\ndevice   {device_id} connected over {stats['transport'].upper()} in"
             f" {stats['connect_time'] * 1000:.1f} ms")
        granted = await device.subscribe(f"device/{device_id}/commands/#", qos=1)
        _say(f"device   subscribed to device/{device_id}/commands/# (granted QoS {granted[0]})")

        telemetry: list[dict[str, Any]] = [
            {"topic": f"device/{device_id}/telemetry/temperature",
             "payload": {"celsius": round(random.uniform(18, 26), 2)}, "qos": 1},
            {"topic": f"device/{device_id}/telemetry/humidity",
             "payload": {"percent": round(random.uniform(30, 60), 1)}, "qos": 1},
            {"topic": f"device/{device_id}/telemetry/pressure",
             "payload": {"hpa": round(random.uniform(990, 1030), 1)}, "qos": 1},
        ]
        sent_at = time.perf_counter()
        results = await device.publish_parallel(telemetry)
        elapsed = (time.perf_counter() - sent_at) * 1000
        _say(f"device   publish_parallel: 3 topics on their own QUIC streams, all"
             f" acknowledged in {elapsed:.1f} ms")
        for item in telemetry:
            mark = "ok " if results[item["topic"]] else "FAILED"
            _say(f"           {mark} {item['topic']} {json.dumps(item['payload'])}")

        async with Client(config(f"{device_id}-operator")) as operator:
            command = {"action": "set_interval", "seconds": 10}
            await operator.publish(f"device/{device_id}/commands/config", command, qos=1)
            _say(f"operator sent {json.dumps(command)} to device/{device_id}/commands/config")

        messages = device.messages()
        message = await asyncio.wait_for(messages.__anext__(), 10)
        _say(f"device   received {message.payload.decode()} on {message.topic}"
             f" (QUIC stream {message.stream_id})")

        _say("\ndevice.get_stats():")
        for key, value in device.get_stats().items():
            if isinstance(value, float):
                value = round(value, 4)
            _say(f"  {key:18} {value}")
        ok = all(results.values())
        first_connect = stats["connect_time"]
    return ok, first_connect


async def _resume(config: Callable[..., ConnectionConfig], device_id: str,
                  first_connect: float) -> bool:
    """2. Reconnect with the TLS session ticket: CONNECT rides in the 0-RTT flight."""
    async with Client(config(device_id)) as device:
        again = device.get_stats()
        _say(f"\nreconnect with the stored session ticket: {again['connect_time'] * 1000:.1f} ms"
             f" to CONNACK (first connect, full handshake: {first_connect * 1000:.1f} ms);"
             f" session_resumed={again['session_resumed']},"
             f" zero_rtt_used={again['zero_rtt_used']}")
        return bool(again["transport"] == "quic")


async def _fallback_and_back(gateway: Gateway, config: Callable[..., ConnectionConfig],
                             device_id: str) -> bool:
    """3. UDP blocked: the QUIC listener goes away, the client falls back to TCP+TLS,
    and moves back to QUIC once the listener returns."""
    await gateway.stop_quic()
    _say("\nQUIC listener stopped (nothing answers QUIC on that port any more)")
    async with Client(config(device_id, quic_probe_interval=0.5)) as device:
        fallback = device.get_stats()
        head_start = device.config.head_start
        why = (f"QUIC had a {head_start * 1000:.0f} ms head start, then TCP+TLS raced it"
               " and won" if fallback["connect_time"] >= head_start else
               "the closed UDP port refused QUIC at once (ICMP port unreachable), so"
               f" TCP+TLS did not wait out the {head_start * 1000:.0f} ms head start")
        _say(f"device   connected over {fallback['transport'].upper()} in"
             f" {fallback['connect_time'] * 1000:.1f} ms: {why}")
        await device.subscribe(f"device/{device_id}/commands/#", qos=1)
        await device.publish(f"device/{device_id}/commands/ping", b"over TCP", qos=1)
        message = await asyncio.wait_for(device.messages().__anext__(), 10)
        _say(f"device   round trip over TCP+TLS: {message.payload.decode()!r}")
        await gateway.start_quic()
        _say("QUIC listener back")
        for _ in range(100):
            if device.get_stats()["transport"] == "quic":
                break
            await asyncio.sleep(0.1)
        moved = device.get_stats()["transport"] == "quic"
        _say(f"device   {'moved back to QUIC' if moved else 'still on TCP+TLS'};"
             f" reconnects so far: {device.get_stats()['reconnect_count']}")
        return bool(fallback["transport"] == "tcp_tls" and moved)
