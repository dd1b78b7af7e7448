"""QUIC servers that behave as MsQuic/EMQX do and our gateway does not: they finish data
streams, allow 10 bidirectional streams, advertise a short idle timeout. Each is our
gateway (real mosquitto behind it, real QUIC) with one behaviour changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioquic.quic.connection import Limit

from mqttquic._mqtt_quic import CONTROL_STREAM
from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.errors import MQTTQUICError, OperationTimeout, StreamLimitReached
from mqttquic.gateway import Gateway, _GatewayConnection

from .brokers import Mosquitto
from .conftest import client_config, gateway_config
from .test_quic import collect

EMQX_STREAMS = 10  # bidirectional streams EMQX lets a client open, control included


class _FrozenLimit(Limit):
    """A stream limit that is never raised: the server gives no credit back."""

    @property  # type: ignore[override]
    def value(self) -> int:
        return self._frozen

    @value.setter
    def value(self, value: int) -> None:
        if not hasattr(self, "_frozen"):
            self._frozen = value


class _FinishingConnection(_GatewayConnection):
    """Finishes every data stream (FIN) right after relaying the broker's first answer on
    it, as a server does when it closes a stream, and allows EMQX's 10 streams."""

    give_credit_back = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.give_credit_back:
            limit = self._quic._local_max_streams_bidi
            limit.value = limit.sent = EMQX_STREAMS
        else:
            frame_type = self._quic._local_max_streams_bidi.frame_type
            self._quic._local_max_streams_bidi = _FrozenLimit(frame_type, "max_streams_bidi",
                                                              EMQX_STREAMS)

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id == CONTROL_STREAM or not data:
            super().send(stream_id, data, end_stream)
            return
        super().send(stream_id, data, end_stream=True)
        relay = self.relays.get(stream_id)
        if relay is not None:
            relay.close()


class _StinglyConnection(_FinishingConnection):
    give_credit_back = False


class _ServerGateway(Gateway):
    connection_class: type[_GatewayConnection] = _FinishingConnection

    def _new_connection(self, *args: Any, **kwargs: Any) -> _GatewayConnection:
        connection = self.connection_class(*args, gateway=self, **kwargs)
        self._connections.add(connection)
        self.quic_connections += 1
        return connection


async def _server(mosquitto: Mosquitto, certs: CertificateFiles,
                  connection_class: type[_GatewayConnection]) -> _ServerGateway:
    config = gateway_config(mosquitto, certs)
    config.max_data_streams = 1000  # the QUIC stream limit is the one under test
    server = _ServerGateway(config)
    server.connection_class = connection_class
    await server.start()
    return server


@pytest.fixture
async def finishing_server(mosquitto: Mosquitto, certs: CertificateFiles
                           ) -> AsyncIterator[_ServerGateway]:
    server = await _server(mosquitto, certs, _FinishingConnection)
    yield server
    await server.stop()


async def test_streams_the_server_finishes_are_ended_and_replaced(
        finishing_server: _ServerGateway, certs: CertificateFiles, topic_root: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Before: the client never ended its side, every finished stream stayed half-open on the
    # server and used one of its 10; the 10th data stream waited for credit for ever.
    config = client_config(finishing_server, certs, transport="quic", operation_timeout=10)
    async with Client(config) as client:
        with caplog.at_level(logging.INFO, logger="mqttquic"):
            for i in range(3 * EMQX_STREAMS):
                await asyncio.wait_for(client.publish(f"{topic_root}/t{i}", b"x", qos=1), 15)
        # A server ending its streams is normal life: logged, never as a warning.
        assert "data stream" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        stats = client.get_stats()
        assert stats["messages_sent"] == 3 * EMQX_STREAMS
        assert stats["reconnect_count"] == 0 and stats["connected"]
        assert finishing_server.quic_connections == 1


async def test_subscription_on_a_finished_stream_is_made_again_on_a_new_one(
        finishing_server: _ServerGateway, certs: CertificateFiles, topic_root: str) -> None:
    config = client_config(finishing_server, certs, transport="quic")
    async with Client(config) as client:
        # The SUBACK comes back, then the server ends the stream: the subscription ended with it.
        assert await client.subscribe(f"{topic_root}/s", qos=1) == [1]
        assert client.get_stats()["streams_open"] == 1  # only the control stream is left


async def test_no_stream_credit_is_a_bounded_wait_that_ends_in_an_error(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str) -> None:
    server = await _server(mosquitto, certs, _StinglyConnection)
    try:
        config = client_config(server, certs, transport="quic", operation_timeout=1.5)
        async with Client(config) as client:
            for i in range(EMQX_STREAMS - 1):  # one stream each, all finished by the server
                await client.publish(f"{topic_root}/t{i}", b"x", qos=1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StreamLimitReached) as info:
                await asyncio.wait_for(client.publish(f"{topic_root}/last", b"x", qos=1), 10)
            assert loop.time() - started < 5
            assert isinstance(info.value, OperationTimeout) and isinstance(info.value, TimeoutError)
            assert isinstance(info.value, MQTTQUICError)
            assert "stream credit" in str(info.value)
            # The connection itself is fine: MQTT on the control stream still works.
            assert client.is_connected
    finally:
        await server.stop()


async def test_a_short_server_idle_timeout_does_not_close_a_quiet_connection(
        mosquitto: Mosquitto, certs: CertificateFiles, topic_root: str) -> None:
    # MsQuic's default idle timeout is 30 s, below our default keepalive of 60 s; this
    # server says 2 s. Before: closed after every quiet 2 s, and the client reconnected.
    config = gateway_config(mosquitto, certs)
    config.idle_timeout = 2.0
    async with Gateway(config) as server:
        async with Client(client_config(server, certs, transport="quic", keepalive=60)) as client:
            first = client._connector.transport
            await client.subscribe(f"{topic_root}/t", qos=1)
            await asyncio.sleep(4.5)  # more than 2x the server's idle timeout, in silence
            assert client._connector.transport is first and first is not None and first.is_connected
            assert client.get_stats()["reconnect_count"] == 0
            assert server.quic_connections == 1
            await client.publish(f"{topic_root}/t", b"still here", qos=1)
            [message] = await collect(client.messages(), 1)
            assert message.payload == b"still here"
