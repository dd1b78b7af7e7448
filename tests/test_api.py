"""The API as users of aiomqtt and paho-mqtt expect it, on both transports: connection
state, one behaviour per call, messages, the Will and CONNECT in the config, TLS objects,
constructor habits, logging."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import mqttquic
from mqttquic import (
    Client,
    ConnectionChange,
    ConnectionConfig,
    MalformedPacket,
    Message,
    TransportType,
    Will,
    topic_matches,
)
from mqttquic.certs import CertificateFiles

from .conftest import client_config
from .test_quic import collect
from .waits import eventually

TRANSPORTS = pytest.mark.parametrize("transport", ["quic", "tcp"])
KIND = {"quic": TransportType.QUIC, "tcp": TransportType.TCP_TLS}


# --- 1. connection state ------------------------------------------------------------------------


@TRANSPORTS
async def test_callbacks_and_changes_follow_a_takeover_and_a_close(
        gateway: Any, certs: CertificateFiles, transport: str) -> None:
    """A second client with the same id takes the session over (the broker drops the
    first): lost, then connected again, then closed; the same to callbacks and iterators."""
    seen_connect: list[ConnectionChange] = []
    seen_disconnect: list[ConnectionChange] = []
    finished = asyncio.Event()

    async def on_disconnect(change: ConnectionChange) -> None:  # a coroutine: kept, awaited
        await asyncio.sleep(0)
        seen_disconnect.append(change)
        if change.state == "closed":
            finished.set()

    config = client_config(gateway, certs, transport=transport, reconnect_min_delay=0.05,
                           client_id=f"take-{uuid.uuid4().hex[:8]}")
    client = Client(config, on_connect=seen_connect.append, on_disconnect=on_disconnect)
    iterated: list[ConnectionChange] = []

    async def follow() -> None:
        async for change in client.connection_changes():
            iterated.append(change)
            if change.state == "closed":
                return

    follower = asyncio.ensure_future(follow())
    await asyncio.sleep(0)
    await client.connect()
    assert (await client.wait_connected(timeout=1)).transport is KIND[transport]
    async with Client(client_config(gateway, certs, transport=transport,
                                    client_id=config.client_id, reconnect=False)):
        pass  # connected, then gone: the first client was dropped for it
    await eventually(lambda: len(seen_connect) == 2)
    await client.disconnect()
    await asyncio.wait_for(finished.wait(), 5)
    await asyncio.wait_for(follower, 5)

    assert [c.state for c in seen_connect] == ["connected", "connected"]
    assert not seen_connect[0].reconnected and seen_connect[1].reconnected
    assert all(c.transport is KIND[transport] and not c.fallback for c in seen_connect)
    assert [c.state for c in seen_disconnect] == ["lost", "closed"]
    assert seen_disconnect[0].reason is not None
    assert [c.state for c in iterated] == ["connected", "lost", "connected", "closed"]
    await eventually(lambda: not client._callbacks.tasks)  # the coroutine's task was kept, and ended


@TRANSPORTS
async def test_session_present_is_exposed(gateway: Any, certs: CertificateFiles,
                                          transport: str, topic_root: str) -> None:
    config = client_config(gateway, certs, transport=transport, clean_start=False,
                           client_id=f"kept-{uuid.uuid4().hex[:8]}")
    async with Client(config) as client:
        assert client.session_present is False
        await client.subscribe(f"{topic_root}/kept", qos=1)
    async with Client(config) as client:
        assert client.session_present is True
        assert client._status.feed.last is not None and client._status.feed.last.session_present


async def test_wait_connected_raises_the_final_reason(gateway: Any, certs: CertificateFiles) -> None:
    client = Client(client_config(gateway, certs, transport="quic"))
    with pytest.raises(mqttquic.OperationTimeout):
        await client.wait_connected(timeout=0.1)  # nobody connects it


# --- 2. one behaviour per call ------------------------------------------------------------------


BAD_CALLS = [
    ("publish QoS 3", lambda c: c.publish("a/b", b"x", qos=3), r"QoS 3"),
    ("wildcard topic", lambda c: c.publish("a/+", b"x"), r"wildcard in topic name"),
    ("empty topic", lambda c: c.publish("", b"x"), r"empty topic name"),
    ("3.1.1 properties", lambda c: c.publish("a", b"x", properties={"content_type": "t"}),
     r"need MQTT 5"),
    ("bad filter", lambda c: c.subscribe("a/#/b"), r"'#' must be a whole last level"),
    ("subscribe QoS 3", lambda c: c.subscribe("a", qos=3), r"subscription QoS 3"),
    ("bad unsubscribe", lambda c: c.unsubscribe("a/#/b"), r"'#' must be a whole last level"),
]


@TRANSPORTS
async def test_bad_calls_fail_alike_on_both_transports(gateway: Any, certs: CertificateFiles,
                                                       transport: str) -> None:
    async with Client(client_config(gateway, certs, transport=transport)) as client:
        for _name, call, message in BAD_CALLS:
            with pytest.raises(MalformedPacket, match=message):
                await call(client)
        # A misspelt MQTT 5 property: ours, not paho's MQTTException.
    async with Client(client_config(gateway, certs, transport=transport,
                                    protocol_version=5)) as client:
        with pytest.raises(MalformedPacket, match="unknown MQTT 5 property 'content_tpye'"):
            await client.publish("a", b"x", properties={"content_tpye": "t"})
        await client.publish("a", b"still works", qos=1)


def test_every_exception_is_exported() -> None:
    from mqttquic import errors

    for name in errors.__all__:
        assert getattr(mqttquic, name) is getattr(errors, name)
    assert issubclass(mqttquic.OperationTimeout, TimeoutError)


# --- 3. messages --------------------------------------------------------------------------------


@TRANSPORTS
async def test_messages_both_spellings_and_topic_matching(
        gateway: Any, certs: CertificateFiles, transport: str, topic_root: str) -> None:
    async with Client(client_config(gateway, certs, transport=transport)) as client:
        await client.subscribe(f"{topic_root}/+/c", qos=1)
        await client.publish(f"{topic_root}/b/c", b"one", qos=1)
        await client.publish(f"{topic_root}/d/c", b"two", qos=1)
        got: list[Message] = []
        async for message in client.messages:  # aiomqtt's spelling
            got.append(message)
            break
        got += await collect(client.messages(), 1)  # the seed's
    assert [m.payload for m in got] == [b"one", b"two"]
    assert got[0].matches(f"{topic_root}/+/c") and got[0].matches(f"{topic_root}/#")
    assert not got[0].matches(f"{topic_root}/d/c")
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("+/x", "$SYS/x")


async def test_on_message_only_queues_nothing(gateway: Any, certs: CertificateFiles,
                                              topic_root: str) -> None:
    got: list[Message] = []
    async with Client(client_config(gateway, certs), on_message=got.append,
                      max_queued_messages=5) as client:
        await client.subscribe(f"{topic_root}/#", qos=1)
        for i in range(20):
            await client.publish(f"{topic_root}/n", str(i), qos=1)
        await eventually(lambda: len(got) == 20)
        assert client._queue.qsize() == 0 and client.messages_dropped == 0


# --- 4. everything a connection needs is in the config ----------------------------------------


def test_will_takes_what_publish_takes() -> None:
    assert Will("t", "offline").payload == b"offline"
    assert Will("t", {"state": "gone"}).payload == b'{"state":"gone"}'
    assert Will("t", b"\x00raw").payload == b"\x00raw"
    config = ConnectionConfig(protocol_version=5, will={"topic": "s", "payload": {"up": False},
                                                         "qos": 1, "properties": {
                                                             "will_delay_interval": 0}},
                              session_expiry_interval=60, connect_properties={
                                  "receive_maximum": 10})
    assert config.will is not None and config.will.payload == b'{"up":false}'
    assert config.connect_properties_dict() == {"receive_maximum": 10, "session_expiry_interval": 60}
    with pytest.raises(ValueError, match="need MQTT 5"):
        ConnectionConfig(session_expiry_interval=60)


@TRANSPORTS
async def test_will_from_the_config_and_disconnect_with_will(
        gateway: Any, certs: CertificateFiles, transport: str, topic_root: str) -> None:
    will_topic = f"{topic_root}/status"
    async with Client(client_config(gateway, certs, transport=transport)) as watcher:
        await watcher.subscribe(will_topic, qos=1)
        config = client_config(gateway, certs, transport=transport, protocol_version=5,
                               will={"topic": will_topic, "payload": "offline", "qos": 1},
                               session_expiry_interval=0)
        client = Client(config)
        await client.connect()
        await client.disconnect(0x04, {"reason_string": "leaving, with the Will"})
        [will] = await collect(watcher.messages, 1, timeout=10)
    assert (will.topic, will.payload) == (will_topic, b"offline")
    with pytest.raises(MalformedPacket, match="3.1.1 DISCONNECT"):
        await Client(client_config(gateway, certs)).disconnect(0x04)


# --- 5. TLS like the peers ----------------------------------------------------------------------


@TRANSPORTS
async def test_tls_context_and_ca_data(gateway: Any, certs: CertificateFiles, other_ca: Any,
                                       transport: str) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    context.check_hostname = False  # the certificate names localhost; we dial 127.0.0.1
    # Python 3.13 sets this by default: our generated certificates must pass it everywhere.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    # No session tickets: a resumed session is authenticated by the ticket, not the CA.
    settings = dict(transport=transport, ca_file=None, zero_rtt=False)
    async with Client(client_config(gateway, certs, tls_context=context, **settings)) as client:
        assert client.transport_type is KIND[transport]
    pem = Path(certs.ca_file).read_text()
    async with Client(client_config(gateway, certs, ca_data=pem, **settings)) as client:
        assert client.transport_type is KIND[transport]
    wrong = ssl.create_default_context(cafile=str(other_ca.ca_file))
    wrong.check_hostname = False
    with pytest.raises(mqttquic.ConnectError):
        await Client(client_config(gateway, certs, tls_context=wrong, connect_timeout=2,
                                   **settings)).connect()
    # insecure: the same on both, whatever CA and name.
    async with Client(client_config(gateway, certs, insecure=True, server_name="wrong.example",
                                    **settings)) as client:
        assert client.transport_type is KIND[transport]


def test_key_password_opens_an_encrypted_key(certs: CertificateFiles, tmp_path: Path) -> None:
    from mqttquic.transports._quic_setup import quic_configuration
    from mqttquic.transports.tcp import tls_context

    key = serialization.load_pem_private_key(Path(certs.key_file).read_bytes(), None)
    encrypted = tmp_path / "key.pem"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2")))
    config = ConnectionConfig(certfile=str(certs.cert_file), keyfile=str(encrypted),
                              key_password="hunter2", ca_file=str(certs.ca_file))
    tls_context(config)
    quic_configuration(config)
    with pytest.raises(Exception):  # noqa: B017 - ssl and cryptography word it differently
        tls_context(ConnectionConfig(certfile=str(certs.cert_file), keyfile=str(encrypted),
                                     key_password="wrong", ca_file=str(certs.ca_file)))


# --- 6. constructor habits ----------------------------------------------------------------------


async def test_a_host_string_and_port(gateway: Any, certs: CertificateFiles) -> None:
    async with Client("127.0.0.1", gateway.quic_port, server_name="localhost",
                      ca_file=str(certs.ca_file), transport="quic") as client:
        assert client.config.quic_port == gateway.quic_port
        assert client.transport_type is TransportType.QUIC


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((123,), {}, "takes a ConnectionConfig or a host name, not int"),
    ((ConnectionConfig(),), {"port": 1}, "not both"),
    (("h",), {"on_message": "print"}, "on_message must be callable"),
    (("h",), {"will": ("t", "x")}, "will must be a Will"),
    (("h", "1883"), {}, "port must be an int"),
])
def test_wrong_types_fail_at_once(args: tuple[Any, ...], kwargs: dict[str, Any],
                                  message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Client(*args, **kwargs)


def test_config_fields_are_keywords() -> None:
    with pytest.raises(TypeError):
        ConnectionConfig("broker.example")  # type: ignore[misc]


# --- 7. logging ---------------------------------------------------------------------------------


async def test_logger_argument_takes_the_clients_log(gateway: Any, certs: CertificateFiles,
                                                     topic_root: str) -> None:
    records: list[logging.LogRecord] = []
    mine = logging.getLogger(f"app.mqtt.{uuid.uuid4().hex[:6]}")
    mine.setLevel(logging.DEBUG)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    mine.addHandler(handler)
    async with Client(client_config(gateway, certs), logger=mine) as client:
        await client.subscribe(f"{topic_root}/x")
    assert any("subscribed to" in r.getMessage() for r in records)
