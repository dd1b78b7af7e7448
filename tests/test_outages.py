"""Outages cost what they must, not a connect timeout each: closed ports are refused at
once (ICMP port unreachable for QUIC, RST for TCP), and a client whose gateway is gone
keeps trying at the backoff's cadence, so it is back soon after the gateway is. Real
gateway processes in front of real mosquitto, on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from mqttquic.brokers import free_port
from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.config import ConnectionConfig
from mqttquic.errors import ConnectError, ConnectionRefused

from .brokers import Mosquitto
from .conftest import client_config
from .test_reliability import gateway_process
from .waits import eventually


@pytest.mark.parametrize("transport", ["quic", "tcp", "auto"])
async def test_connect_to_closed_ports_fails_at_once(tmp_path: Path, transport: str) -> None:
    # Before: QUIC (and so "auto") waited the whole connect_timeout, 10.6 s by default.
    config = ConnectionConfig(host="127.0.0.1", quic_port=free_port(socket.SOCK_DGRAM),
                              tcp_port=free_port(), transport=transport, insecure=True,
                              session_ticket_file=str(tmp_path / "t"), connect_timeout=60.0)
    with pytest.raises(ConnectError) as refused:
        await asyncio.wait_for(Client(config).connect(), 10)  # not the 60 s timeout
    causes = {"quic": ["ICMP port unreachable"], "tcp": ["Connection refused"],
              "auto": ["ICMP port unreachable", "Connection refused"]}[transport]
    for cause in causes:
        assert cause in str(refused.value)


async def test_a_gateway_outage_is_retried_at_the_backoffs_cadence_not_the_timeouts(
        mosquitto: Mosquitto, certs: CertificateFiles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    quic_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    gateway = gateway_process(mosquitto, certs, quic_port, tcp_port, "--reset-key-file",
                              str(tmp_path / "reset.key"))
    config = ConnectionConfig(host="127.0.0.1", quic_port=quic_port, tcp_port=tcp_port,
                              ca_file=str(certs.ca_file), server_name="localhost",
                              session_ticket_file=str(tmp_path / "t"), connect_timeout=10.0,
                              keepalive=2)  # QUIC PINGs each second: the loss shows at once
    try:
        async with Client(config) as client:
            gateway.kill()
            gateway.wait()
            down = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="mqttquic"):
                await eventually(lambda: "connection lost" in caplog.text, 5.0)
                lost = time.monotonic()
                await asyncio.sleep(4.0)  # the outage whose reconnect attempts are counted
            attempts = caplog.text.count("reconnect attempt")
            # Each attempt was refused at once and the next came within a second: at
            # least 3 in 4 s (before: one per 10 s connect timeout).
            assert attempts >= 3, caplog.text
            gateway = gateway_process(mosquitto, certs, quic_port, tcp_port, "--reset-key-file",
                                      str(tmp_path / "reset.key"))
            up = time.monotonic()
            await eventually(lambda: client.is_connected, 5.0)
            back = time.monotonic() - up
            print(f"down {up - down:.1f} s (noticed after {lost - down:.1f} s); back {back:.2f} s"
                  f" after the gateway listened, over {client.get_stats()['transport']},"
                  f" {attempts} attempts")
            await client.publish("t/after-outage", b"x", qos=1)
    finally:
        gateway.kill()
        gateway.wait()


async def test_start_connects_in_the_background_once_the_gateway_is_up(
        mosquitto: Mosquitto, certs: CertificateFiles, tmp_path: Path) -> None:
    # A device that starts offline: start() returns at once, requests wait, and the
    # client connects when the gateway is there (before: connect() raised, and the app
    # had to loop around it).
    quic_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    config = ConnectionConfig(host="127.0.0.1", quic_port=quic_port, tcp_port=tcp_port,
                              ca_file=str(certs.ca_file), server_name="localhost",
                              session_ticket_file=str(tmp_path / "t"), connect_timeout=10.0,
                              reconnect_min_delay=0.05, reconnect_max_delay=0.5,
                              # QUIC's head start is 0.25 s: on a loaded machine the
                              # gateway that has just started can answer TCP first.
                              head_start=3.0)
    client = Client(config)
    changes: list[str] = []
    client.on_connect = lambda change: changes.append(change.state)
    gateway = None
    try:
        client.start()
        assert not client.is_connected
        publishing = asyncio.ensure_future(client.publish("t/started", b"x", qos=1, timeout=20))
        connecting = asyncio.ensure_future(client.connect())  # waits for start()'s connection
        await asyncio.sleep(1.0)  # attempts refused at once, one after another
        assert not publishing.done() and not connecting.done()
        gateway = gateway_process(mosquitto, certs, quic_port, tcp_port, "--reset-key-file",
                                  str(tmp_path / "reset.key"))
        await asyncio.wait_for(asyncio.gather(publishing, connecting), 15)
        change = await client.wait_connected(1)
        assert change.state == "connected" and not change.reconnected
        assert changes == ["connected"]
        assert client.get_stats()["transport"] == "quic"
    finally:
        await client.disconnect()
        if gateway is not None:
            gateway.kill()
            gateway.wait()


async def test_start_with_a_final_refusal_fails_the_client(
        gateways: Any, mosquitto_auth: Mosquitto, certs: CertificateFiles) -> None:
    gateway = await gateways(mosquitto_auth)
    client = Client(client_config(gateway, certs, username="device", password="wrong",
                                  reconnect_min_delay=0.05))
    client.start()
    with pytest.raises(ConnectionRefused):
        await client.wait_connected(10)
    with pytest.raises(ConnectError, match="failed for good"):
        await client.publish("t/refused", b"x", qos=1, timeout=5)
    await client.disconnect()


async def test_disconnect_stops_what_start_began(tmp_path: Path) -> None:
    config = ConnectionConfig(host="127.0.0.1", quic_port=free_port(socket.SOCK_DGRAM),
                              tcp_port=free_port(), insecure=True,
                              session_ticket_file=str(tmp_path / "t"), reconnect_min_delay=0.05)
    client = Client(config)
    client.start()
    waiting = asyncio.ensure_future(client.publish("t/never", b"x", qos=1, timeout=30))
    await asyncio.sleep(0.5)
    await client.disconnect()
    with pytest.raises(ConnectError, match="disconnected"):
        await asyncio.wait_for(waiting, 5)
    assert not client._connector.connecting_in_background
