"""Early publish (``ConnectionConfig(early_publish=True)``): with a ticket that allows
0-RTT, ``connect()`` returns once CONNECT is in flight and QoS 1/2 publishes ride in the
0-RTT flight with it; the CONNACK is still checked when it comes.

A relay with 50 ms each way sits between client and gateway, so the CONNACK is a
round trip (100 ms) away when ``connect()`` returns: the tests look at the order of
events, not at times."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.errors import ConnectionRefused
from mqttquic.gateway import Gateway

from .conftest import USERS, client_config
from .test_quic import collect
from .test_recovery import UdpLink, in_front_of

DELAY = 0.05  # each way


async def _through_relay(gateway: Gateway, certs: CertificateFiles,
                         **settings: Any) -> tuple[UdpLink, Any]:
    relay = UdpLink(gateway.quic_port, delay=DELAY)
    target = await in_front_of(relay, gateway)
    return relay, client_config(target, certs, transport="quic", early_publish=True,
                                session_ticket_file=str(certs.ca_file.parent / f"t-{id(relay)}"),
                                **settings)


async def _store_a_ticket(config: Any) -> None:
    # No ticket yet: a full handshake, and connect() waits for the CONNACK as always.
    async with Client(config) as client:
        assert client._connector.transport.is_connected
        assert not client._connector.transport.provisional


async def test_a_qos1_publish_rides_in_the_0rtt_flight_with_connect(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    relay, config = await _through_relay(gateway, certs)
    try:
        await _store_a_ticket(config)
        async with Client(client_config(gateway, certs)) as subscriber:
            await subscriber.subscribe(f"{topic_root}/#", qos=1)
            async with Client(config) as client:
                transport: Any = client._connector.transport
                # connect() returned with CONNECT in flight: no handshake, no CONNACK yet.
                assert transport.provisional and not transport.is_connected
                assert transport.handshake is None
                publishing = asyncio.ensure_future(
                    client.publish(f"{topic_root}/early", b"in 0-RTT", qos=1))
                await asyncio.sleep(0)  # the PUBLISH is written: still before the handshake
                assert transport.handshake is None and transport.session.bytes_sent > 40
                await asyncio.wait_for(publishing, 10)
                assert transport.zero_rtt_used and transport.is_connected
                assert not transport.provisional
            [message] = await collect(subscriber.messages(), 1)
            assert message.payload == b"in 0-RTT"
    finally:
        relay.close()


async def test_a_refused_connack_fails_the_early_publishes(
        auth_gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    [(user, password)] = USERS.items()
    relay, good = await _through_relay(auth_gateway, certs, username=user, password=password)
    try:
        await _store_a_ticket(good)
        bad = dataclasses.replace(good, password="wrong")  # same ticket and trust
        client = Client(bad)
        assert await client.connect() is True  # CONNECT is only in flight
        with pytest.raises(ConnectionRefused) as refused:
            await asyncio.wait_for(client.publish(f"{topic_root}/x", b"x", qos=1), 10)
        assert refused.value.reason_code in (4, 5)  # bad credentials / not authorized
        assert not client.is_connected
        with pytest.raises(ConnectionRefused):
            await client.wait_connected(5)  # final: no reconnect
        await client.disconnect()
    finally:
        relay.close()


async def test_rejected_0rtt_is_sent_again_in_1rtt(
        gateway: Gateway, gateways: Any, mosquitto: Any, certs: CertificateFiles,
        topic_root: str) -> None:
    relay, config = await _through_relay(gateway, certs)
    try:
        await _store_a_ticket(config)
        # Another gateway behind the same address: it never issued that ticket.
        stranger = await gateways(mosquitto)
        relay.target = ("127.0.0.1", stranger.quic_port)
        async with Client(client_config(gateway, certs)) as subscriber:
            await subscriber.subscribe(f"{topic_root}/#", qos=1)
            async with Client(config) as client:
                transport: Any = client._connector.transport
                assert transport.provisional
                await asyncio.wait_for(client.publish(f"{topic_root}/again", b"once", qos=1), 10)
                assert not transport.zero_rtt_used and transport.is_connected
            messages = await collect(subscriber.messages(), 1, linger=0.3)
            assert [m.payload for m in messages] == [b"once"]
    finally:
        relay.close()


async def test_qos0_and_subscriptions_wait_for_the_connack(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    relay, config = await _through_relay(gateway, certs)
    try:
        await _store_a_ticket(config)
        async with Client(config) as client:
            transport: Any = client._connector.transport
            assert transport.provisional
            # A replayed 0-RTT QoS 0 message would be delivered twice: it waits.
            await asyncio.wait_for(client.publish(f"{topic_root}/q0", b"late", qos=0), 10)
            assert transport.is_connected and not transport.provisional
        async with Client(config) as client:
            transport = client._connector.transport
            assert transport.provisional
            assert await asyncio.wait_for(client.subscribe(f"{topic_root}/#", qos=1), 10) == [1]
            assert transport.is_connected
    finally:
        relay.close()


async def test_without_early_publish_nothing_changes(
        gateway: Gateway, certs: CertificateFiles) -> None:
    relay, config = await _through_relay(gateway, certs)
    try:
        await _store_a_ticket(config)
        plain = dataclasses.replace(config, early_publish=False)
        async with Client(plain) as client:  # the ticket is used, connect() waits all the same
            transport: Any = client._connector.transport
            assert transport.is_connected and transport.zero_rtt_used
            assert not transport.provisional
    finally:
        relay.close()
