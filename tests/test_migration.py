"""Connection migration: the client's address or port changes mid-session, by a NAT
(passively) or by Client.migrate() (on purpose), and the QUIC connection, its MQTT
session and the gateway's upstream session all go on. Real QUIC through our gateway
and mosquitto; the NAT is a UDP relay on loopback that changes its source port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.errors import ConnectError
from mqttquic.gateway import Gateway

from .conftest import client_config
from .test_quic import collect
from .test_recovery import UdpLink, in_front_of
from .waits import eventually


class Nat(UdpLink):
    """A UDP relay that maps each client to a source port of its own, and can forget
    its mappings (``rebind``), as a NAT does: the server then sees the client's packets
    come from a new port. ``drop_new`` drops what comes from a client it has not seen."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.drop_new = False
        self.ports_seen: set[int] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.drop_new and addr not in self._upstreams:
            return
        super().datagram_received(data, addr)
        for upstream in self._upstreams.values():
            self.ports_seen.add(upstream.get_extra_info("sockname")[1])

    def rebind(self) -> None:
        upstreams, self._upstreams = self._upstreams, {}
        for upstream in upstreams.values():
            upstream.close()


@pytest.fixture
async def nat(gateway: Gateway) -> AsyncIterator[tuple[Nat, Any]]:
    relay = Nat(gateway.quic_port)
    yield relay, await in_front_of(relay, gateway)
    relay.close()


def gateway_connection(gateway: Gateway) -> Any:
    [connection] = gateway._connections
    return connection


def client_port(client: Client) -> int:
    transport = client._connector.transport
    assert transport is not None
    return int(transport._transport.get_extra_info("sockname")[1])  # type: ignore[attr-defined]


async def warm_up(client: Client, watcher: Client, topic: str) -> None:
    """Both subscribed to the topic's level, and the topic's data stream (and its broker
    connection) opened before the move."""
    root = topic.rsplit("/", 1)[0]
    await watcher.subscribe(f"{root}/#", qos=1)
    await client.subscribe(f"{root}/#", qos=1)
    await client.publish(topic, b"warm", qos=1)
    for who in (watcher, client):
        assert [m.payload for m in await collect(who.messages, 1)] == [b"warm"]


async def publish_across(client: Client, topic: str, change: Any) -> None:
    """A QoS 1 publish in flight while ``change()`` moves the path: acknowledged."""
    publishing = asyncio.ensure_future(client.publish(topic, b"in flight", qos=1))
    await asyncio.sleep(0)  # handed to QUIC, not yet acknowledged
    assert not publishing.done()
    result = change()
    if asyncio.iscoroutine(result):
        await result
    await asyncio.wait_for(publishing, 10)


async def after_the_move(client: Client, watcher: Client, topic: str, upstreams: int,
                         gateway: Gateway, connection: Any) -> None:
    """The same connection, session and subscription, nothing delivered twice."""
    await client.publish(topic, b"after", qos=1)  # the same topic: the same data stream
    got = await collect(watcher.messages, 2, timeout=10, linger=0.3)
    assert sorted(m.payload for m in got) == [b"after", b"in flight"]  # each exactly once
    mine = await collect(client.messages, 2, timeout=10, linger=0.3)  # its own subscription
    assert sorted(m.payload for m in mine) == [b"after", b"in flight"]
    assert client.get_stats()["reconnect_count"] == 0
    assert gateway_connection(gateway) is connection  # one QUIC connection at the gateway
    # No new session at the broker: the control stream's upstream connection is the one
    # opened at connect, and no stream needed a new one.
    assert gateway.upstream_connections == upstreams
    assert connection.relays[0].writer is not None and not connection.relays[0].writer.is_closing()
    assert gateway.quic_connections == 1


async def test_a_nat_rebinding_keeps_the_connection_and_the_session(
        nat: tuple[Nat, Any], gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    relay, target = nat
    config = client_config(target, certs, transport="quic", zero_rtt=False)
    async with Client(client_config(gateway, certs, transport="tcp")) as watcher, \
            Client(config) as client:
        await warm_up(client, watcher, f"{topic_root}/x")
        connection = gateway_connection(gateway)
        quic_before = client._connector.transport
        upstreams = gateway.upstream_connections
        old_path = connection._quic._network_paths[0].addr
        await publish_across(client, f"{topic_root}/x", relay.rebind)
        new_path = connection._quic._network_paths[0]
        assert new_path.addr != old_path
        # The gateway validates the new path (PATH_CHALLENGE, PATH_RESPONSE): that can end
        # just after the publish's acknowledgement.
        await eventually(lambda: new_path.is_validated, 5.0)
        assert len(relay.ports_seen) == 2
        assert client._connector.transport is quic_before
        await after_the_move(client, watcher, f"{topic_root}/x", upstreams, gateway, connection)


async def test_migrate_moves_to_a_new_socket_with_a_new_connection_id(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    config = client_config(gateway, certs, transport="quic", zero_rtt=False)
    async with Client(client_config(gateway, certs, transport="tcp")) as watcher, \
            Client(config) as client:
        await warm_up(client, watcher, f"{topic_root}/x")
        connection = gateway_connection(gateway)
        upstreams = gateway.upstream_connections
        quic = client._connector.transport._quic  # type: ignore[union-attr]
        port, cid = client_port(client), quic._peer_cid.cid
        await publish_across(client, f"{topic_root}/x", client.migrate)
        assert client_port(client) != port
        assert quic._peer_cid.cid != cid  # an observer cannot link the two paths
        assert connection._quic._network_paths[0].addr[1] == client_port(client)
        assert client.get_stats()["migrations"] == 1
        await after_the_move(client, watcher, f"{topic_root}/x", upstreams, gateway, connection)


async def test_migrate_to_another_local_address(gateway: Gateway, certs: CertificateFiles,
                                                topic_root: str) -> None:
    async with Client(client_config(gateway, certs, transport="quic")) as client:
        await client.subscribe(f"{topic_root}/a", qos=1)
        await client.migrate("127.0.0.2")  # a second loopback address: a new network
        assert gateway_connection(gateway)._quic._network_paths[0].addr[0].endswith("127.0.0.2")
        await client.publish(f"{topic_root}/a", b"from the new address", qos=1)
        [message] = await collect(client.messages, 1)
        assert message.payload == b"from the new address"


async def test_a_new_path_that_does_not_answer_leaves_the_old_one(
        nat: tuple[Nat, Any], gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    relay, target = nat
    async with Client(client_config(target, certs, transport="quic")) as client:
        await client.subscribe(f"{topic_root}/a", qos=1)
        port = client_port(client)
        relay.drop_new = True  # the new network goes nowhere
        with pytest.raises(ConnectError, match="did not answer"):
            await client.migrate(timeout=0.5)
        relay.drop_new = False
        assert client_port(client) == port
        await client.publish(f"{topic_root}/a", b"still here", qos=1)
        [message] = await collect(client.messages, 1)
        assert message.payload == b"still here"
        assert client.get_stats()["migrations"] == 0
        assert client.get_stats()["reconnect_count"] == 0


async def test_tcp_cannot_migrate(gateway: Gateway, certs: CertificateFiles) -> None:
    async with Client(client_config(gateway, certs, transport="tcp")) as client:
        with pytest.raises(ConnectError, match="TCP\\+TLS connection cannot migrate"):
            await client.migrate()
