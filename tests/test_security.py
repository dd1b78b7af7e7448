"""The threat model of SECURITY.md, checked: what the client trusts, what a ticket file
grants, what a replay can do, where a password may appear, on both transports where the
check applies. Real QUIC, real TLS, real mosquitto; the servers that misbehave (a server
the client must not trust, one that accepts a ticket many times, a TLS 1.2-only one, a
broker that demands client certificates) are written here."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import shutil
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aioquic.quic.events import QuicEvent, StreamDataReceived
from cryptography.hazmat.primitives import serialization

from mqttquic._files import why_untrusted
from mqttquic._tls import load_tls_material
from mqttquic.brokers import free_port
from mqttquic.certs import CertificateFiles, generate_certificates, kept_identity
from mqttquic.client import Client
from mqttquic.config import ConnectionConfig
from mqttquic.errors import ConnectError, ConnectionRefused, TLSFileError
from mqttquic.gateway import Gateway, GatewayConfig, _GatewayConnection, _SingleUseTickets
from mqttquic.tickets import MAX_FILE_SIZE, TicketStore

from .brokers import Mosquitto, relay_both_ways, start_child
from .conftest import USERS, client_config, gateway_config
from .test_recovery import UdpLink
from .test_tickets import make_ticket
from .waits import eventually

TRANSPORTS = pytest.mark.parametrize("transport", ["quic", "tcp"])


# --- servers of the tests' own ----------------------------------------------------------------

class _Recording(_GatewayConnection):
    """Our gateway's connection, noting every byte a client sends on any stream: a server
    that must never see a CONNECT (and its password) shows here whether it did."""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.data:
            assert isinstance(self.gateway, RecordingGateway)
            self.gateway.heard.append(event.data)
        super().quic_event_received(event)


class _ReusableTickets(_SingleUseTickets):
    """Session tickets a server accepts any number of times (ours accepts each once)."""

    def pop(self, label: bytes) -> Any:
        return self._tickets.get(label)


class RecordingGateway(Gateway):
    def __init__(self, config: GatewayConfig, *, reusable_tickets: bool = False) -> None:
        super().__init__(config)
        self.heard: list[bytes] = []
        if reusable_tickets:
            self._tickets = _ReusableTickets()

    def _new_connection(self, *args: Any, **kwargs: Any) -> _GatewayConnection:
        connection = _Recording(*args, gateway=self, **kwargs)
        self._connections.add(connection)
        self.quic_connections += 1
        return connection

    def heard_from(self, marker: bytes) -> bool:
        return any(marker in data for data in self.heard)


@pytest.fixture
async def untrusted_server(mosquitto_auth: Mosquitto, other_ca: CertificateFiles
                           ) -> AsyncIterator[RecordingGateway]:
    """A server whose certificate the tests' CA did not sign, that takes a ticket many
    times: only the client's own care keeps its CONNECT away from it."""
    config = gateway_config(mosquitto_auth, other_ca)
    async with RecordingGateway(config, reusable_tickets=True) as server:
        yield server


@pytest.fixture
async def recording_gateway(mosquitto_auth: Mosquitto, certs: CertificateFiles
                            ) -> AsyncIterator[RecordingGateway]:
    async with RecordingGateway(gateway_config(mosquitto_auth, certs)) as server:
        yield server


def _secret() -> str:
    """A password that can be found in any byte stream or log it reaches."""
    return f"pw-{uuid.uuid4().hex}"


def _stored_trusts(path: str) -> list[str]:
    data = json.loads(Path(path).read_text())
    return [key.partition("#")[2] for key in data["tickets"]]


# --- 1. session tickets bound to the trust they were earned under ------------------------------

def test_the_trust_id_changes_with_everything_a_ticket_rests_on(
        certs: CertificateFiles, other_ca: CertificateFiles, tmp_path: Path) -> None:
    def trust(**settings: Any) -> str:
        base: dict[str, Any] = dict(host="127.0.0.1", server_name="localhost",
                                    ca_file=str(certs.ca_file))
        base.update(settings)
        return load_tls_material(ConnectionConfig(**base)).trust_id

    client_a = generate_certificates(tmp_path / "a", prefix="a-", client_auth=True)
    client_b = generate_certificates(tmp_path / "b", prefix="b-", client_auth=True)
    ids = {
        "strict": trust(),
        "insecure": trust(insecure=True),
        "system store": trust(ca_file=None),
        "other CA": trust(ca_file=str(other_ca.ca_file)),
        "other name": trust(server_name="broker.example"),
        "client A": trust(certfile=str(client_a.cert_file), keyfile=str(client_a.key_file)),
        "client B": trust(certfile=str(client_b.cert_file), keyfile=str(client_b.key_file)),
    }
    assert len(set(ids.values())) == len(ids), ids
    # The CA's content counts, not its file: the same certificate elsewhere, with text
    # around it, is the same trust; ca_data with the same PEM too.
    copy = tmp_path / "copy.pem"
    copy.write_text("# our CA\n" + certs.ca_file.read_text() + "\n")
    assert trust(ca_file=str(copy)) == ids["strict"]
    assert trust(ca_file=None, ca_data=certs.ca_file.read_text()) == ids["strict"]
    # Insecure is one trust whatever the CA or name: it verified nothing.
    assert trust(insecure=True, ca_file=None, server_name="x") != ids["strict"]


def test_a_ticket_earned_under_other_trust_is_not_offered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TicketStore(tmp_path / "t")
    store.save(TicketStore.key("h", 1, "localhost", "insecure-id"), make_ticket())
    with caplog.at_level(logging.INFO, logger="mqttquic.tickets"):
        assert store.take_resumption(TicketStore.key("h", 1, "localhost", "strict-id")) == (None, None)
    assert "earned under other trust settings" in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # never an error
    # A ticket file of an earlier version, keyed by server only, is never used either.
    (tmp_path / "old").write_text(json.dumps({"version": 1, "tickets": {
        "h:1:localhost": json.loads((tmp_path / "t").read_text())["tickets"][
            "h:1:localhost#insecure-id"]}}))
    (tmp_path / "old").chmod(0o600)
    assert TicketStore(tmp_path / "old").take(TicketStore.key("h", 1, "localhost", "x")) is None


async def test_an_insecure_runs_ticket_does_not_let_a_strict_run_skip_verification(
        untrusted_server: RecordingGateway, certs: CertificateFiles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # The reproduction of issue 16: a test run with insecure=True stores a ticket; the
    # strict run after it (same ticket file) must verify the server, and fail.
    password = _secret()
    tickets = str(tmp_path / "tickets")
    common = dict(session_ticket_file=tickets, username="device", password=password,
                  transport="quic")
    async with Client(client_config(untrusted_server, certs, insecure=True,
                                    **{**common, "password": USERS["device"]})) as client:
        await client.publish("t/insecure", b"x", qos=1)
    assert len(_stored_trusts(tickets)) == 1
    untrusted_server.heard.clear()
    for transport in ("quic", "auto"):
        with caplog.at_level(logging.INFO, logger="mqttquic"):
            with pytest.raises(ConnectError, match="certificate"):
                await Client(client_config(untrusted_server, certs,
                                           **{**common, "transport": transport})).connect()
        assert "earned under other trust settings" in caplog.text
        # Not one byte of MQTT reached the server: no CONNECT, no password.
        assert untrusted_server.heard == []
    assert len(_stored_trusts(tickets)) == 1  # the insecure ticket is still there, unused


async def test_a_ticket_from_one_ca_does_not_resume_under_another(
        recording_gateway: RecordingGateway, certs: CertificateFiles, other_ca: CertificateFiles,
        tmp_path: Path) -> None:
    password = USERS["device"]
    tickets = str(tmp_path / "tickets")
    common = dict(session_ticket_file=tickets, username="device", password=password,
                  transport="quic")
    for _ in range(2):  # the second run resumes: the ticket works under its own trust
        async with Client(client_config(recording_gateway, certs, **common)) as client:
            stats = client.get_stats()
    assert stats["session_resumed"] and stats["zero_rtt_used"]
    recording_gateway.heard.clear()
    with pytest.raises(ConnectError, match="certificate"):
        await Client(client_config(recording_gateway, certs, ca_file=str(other_ca.ca_file),
                                   **common)).connect()
    assert not recording_gateway.heard_from(password.encode())
    # A missing or garbage CA file while a ticket is cached: refused before any packet.
    connections = recording_gateway.quic_connections
    for bad in (str(tmp_path / "missing.pem"), "/etc/hostname"):
        with pytest.raises(TLSFileError, match="ca_file"):
            await Client(client_config(recording_gateway, certs, ca_file=bad, **common)).connect()
    assert recording_gateway.quic_connections == connections
    # The system store does not hold the tests' CA: refused, not resumed.
    with pytest.raises(ConnectError, match="certificate"):
        await Client(client_config(recording_gateway, certs, ca_file=None, **common)).connect()
    assert not recording_gateway.heard_from(password.encode())


async def test_a_ticket_earned_as_one_client_certificate_does_not_resume_as_another(
        gateway: Gateway, certs: CertificateFiles, tmp_path: Path) -> None:
    identities = {name: generate_certificates(tmp_path / name, prefix=f"{name}-", client_auth=True)
                  for name in ("a", "b")}
    tickets = str(tmp_path / "tickets")

    async def run(name: str) -> bool:
        files = identities[name]
        async with Client(client_config(gateway, certs, transport="quic", session_ticket_file=tickets,
                                        certfile=str(files.cert_file),
                                        keyfile=str(files.key_file))) as client:
            return bool(client.get_stats()["session_resumed"])

    assert not await run("a")
    assert not await run("b")  # A's ticket is not B's
    assert await run("a")  # A's ticket was kept for A
    assert len(set(_stored_trusts(tickets))) == 2


# --- 2. TLS file errors at once -----------------------------------------------------------

def _encrypted_key(certs: CertificateFiles, folder: Path, password: bytes) -> Path:
    key = serialization.load_pem_private_key(certs.key_file.read_bytes(), None)
    path = folder / "encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(password)))
    return path


def _bad_settings(certs: CertificateFiles, other_ca: CertificateFiles, tmp_path: Path
                  ) -> list[tuple[dict[str, Any], str]]:
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    encrypted = _encrypted_key(certs, tmp_path, b"right-password")
    cert = str(certs.cert_file)
    return [
        ({"ca_file": str(tmp_path / "nope.pem")}, f"ca_file {tmp_path / 'nope.pem'}: No such file"),
        ({"ca_file": str(tmp_path)}, f"ca_file {tmp_path}: Is a directory"),
        ({"ca_file": "/etc/hostname"}, "ca_file /etc/hostname: no PEM certificate in it"),
        ({"ca_file": str(damaged)}, f"ca_file {damaged}: a damaged PEM certificate"),
        ({"ca_data": "garbage"}, "ca_data: no PEM certificate in it"),
        ({"certfile": str(tmp_path / "c.pem")}, f"certfile {tmp_path / 'c.pem'}: No such file"),
        ({"certfile": cert}, f"certfile {cert}: no PEM private key in it (and no keyfile"),
        ({"certfile": cert, "keyfile": "/etc/hostname"}, "keyfile /etc/hostname: no PEM private key"),
        ({"certfile": cert, "keyfile": str(encrypted)},
         f"keyfile {encrypted}: the key is encrypted and no key_password was given"),
        ({"certfile": cert, "keyfile": str(encrypted), "key_password": "wrong-password"},
         f"keyfile {encrypted}: wrong key_password"),
        ({"certfile": cert, "keyfile": str(other_ca.key_file)},
         f"keyfile {other_ca.key_file}: the key does not belong to the certificate in {cert}"),
        ({"keyfile": str(certs.key_file)}, "a key without a certificate"),
    ]


async def test_a_tls_file_that_cannot_be_used_fails_at_once_naming_it(
        gateway: Gateway, certs: CertificateFiles, other_ca: CertificateFiles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    for settings, message in _bad_settings(certs, other_ca, tmp_path):
        for transport in ("quic", "tcp", "auto"):
            before = (gateway.quic_connections, gateway.tcp_connections)
            started = loop.time()
            with pytest.raises(TLSFileError) as caught:
                await Client(client_config(gateway, certs, transport=transport,
                                           **settings)).connect()
            assert message in str(caught.value), (transport, settings)
            assert "wrong-password" not in str(caught.value)
            # Before any packet: the server saw no connection at all, and no timeout ran.
            assert (gateway.quic_connections, gateway.tcp_connections) == before
            assert loop.time() - started < 1.0
    # No asyncio "Exception in callback" traceback, no fallback warning for it.
    assert "Exception in callback" not in caplog.text
    assert "trying TCP+TLS" not in caplog.text


def test_the_cli_says_what_is_wrong_with_a_tls_file_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    result = subprocess.run(
        [sys.executable, "-m", "mqttquic", "pub", "-h", "127.0.0.1", "-p", "9", "--cafile",
         str(missing), "-t", "t", "-m", "m"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"mqttquic pub: ca_file {missing}: No such file or directory"


# --- 3. a stable gateway identity ---------------------------------------------------------

async def test_the_gateway_keeps_its_generated_identity_across_restarts(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    folder = tmp_path / "state"
    config = GatewayConfig(upstream_port=mosquitto.port, quic_port=0, tcp_port=0,
                           identity_dir=str(folder))
    trusted = tmp_path / "trusted-ca.pem"  # what a user copied from the first start
    for start in range(2):
        async with Gateway(config) as gateway:
            assert gateway.ca_file == str(folder / "gateway-ca.pem")
            if start == 0:
                shutil.copy(gateway.ca_file, trusted)
            for transport in ("quic", "tcp"):
                # Strict verification against the CA of the first start, also after a restart.
                settings = dict(host="127.0.0.1", quic_port=gateway.quic_port,
                                tcp_port=gateway.tcp_port, server_name="localhost",
                                ca_file=str(trusted), transport=transport, zero_rtt=False,
                                connect_timeout=5.0)
                async with Client(ConnectionConfig(**settings)) as client:
                    await client.publish("t/identity", b"x", qos=1)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / "gateway-server.key").st_mode) == 0o600


def test_a_kept_identity_is_renewed_when_it_expires_and_refused_when_others_may_touch_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = kept_identity(tmp_path)
    assert kept_identity(tmp_path) == first
    ca = first.ca_file.read_bytes()
    # An identity with less than RENEW_BEFORE left is made anew, and the log says so.
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=100)
    generate_certificates(tmp_path, days=110, prefix="gateway-", start=old)
    with caplog.at_level(logging.WARNING, logger="mqttquic.gateway"):
        kept_identity(tmp_path)
    assert "made a new one; clients must trust its CA" in caplog.text
    assert first.ca_file.read_bytes() != ca
    first.key_file.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        kept_identity(tmp_path)
    first.key_file.chmod(0o600)
    first.ca_file.chmod(0o666)
    with pytest.raises(ValueError, match="writable by others"):
        kept_identity(tmp_path)


def test_the_cli_gateway_prints_the_certificate_to_trust(mosquitto: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    outputs = []
    for _ in range(2):
        gateway = start_child(
            [sys.executable, "-m", "mqttquic", "gateway", "--upstream",
             f"127.0.0.1:{mosquitto.port}", "--quic", f"127.0.0.1:{port}", "--tcp", "off",
             "--identity-dir", str(tmp_path), "--reset-key-file", "off"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert gateway.stdout is not None
            outputs.append(gateway.stdout.readline() + gateway.stdout.readline())
        finally:
            gateway.terminate()
            gateway.wait(10)
    assert outputs[0] == outputs[1]
    assert f"--cafile {tmp_path / 'gateway-ca.pem'}" in outputs[0]


# --- 4. the same refusal on both listeners -------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
async def test_with_the_broker_down_both_listeners_answer_server_unavailable(
        certs: CertificateFiles, version: int) -> None:
    config = GatewayConfig(upstream_port=free_port(), quic_port=0, tcp_port=0,
                           cert_file=str(certs.cert_file), key_file=str(certs.key_file))
    async with Gateway(config) as gateway:
        for transport in ("quic", "tcp"):
            with pytest.raises(ConnectionRefused) as caught:
                await Client(client_config(gateway, certs, transport=transport,
                                           protocol_version=version)).connect()
            assert caught.value.reason_name == "Server unavailable"
            assert caught.value.reason_code == (0x88 if version == 5 else 3)


# --- 5. the rest of the threat model --------------------------------------------------------

@pytest.fixture(scope="module")
def expired(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A CA and a server certificate that expired ten days ago."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    return generate_certificates(tmp_path_factory.mktemp("expired"), days=30, start=start)


@TRANSPORTS
async def test_the_server_certificate_is_verified(
        gateway: Gateway, mosquitto: Mosquitto, certs: CertificateFiles, other_ca: CertificateFiles,
        expired: CertificateFiles, transport: str) -> None:
    # The name, the issuer and the dates, on each transport alone (no fallback to hide one).
    cases = [({"server_name": "wrong.example"}, "(?i)hostname|name|mismatch"),
             ({"ca_file": str(other_ca.ca_file)}, "(?i)certificate")]
    for settings, pattern in cases:
        with pytest.raises(ConnectError, match=pattern):
            await Client(client_config(gateway, certs, transport=transport, **settings)).connect()
    async with Gateway(gateway_config(mosquitto, expired)) as stale:
        with pytest.raises(ConnectError, match="(?i)expired|no longer valid"):
            await Client(client_config(stale, expired, transport=transport)).connect()


class _TLS12Relay:
    """A TLS 1.2-only server in front of mosquitto, as an old broker or proxy is."""

    def __init__(self, certs: CertificateFiles, upstream_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.cert_file, certs.key_file)
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.upstream_port = upstream_port
        self.tcp_port = 0
        self.quic_port = 9  # unused: these clients speak TCP+TLS only

    async def __aenter__(self) -> _TLS12Relay:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await relay_both_ways((reader, writer), (up_reader, up_writer))

        self.server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=self.context)
        self.tcp_port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def test_the_tls_version_floor(mosquitto: Mosquitto, certs: CertificateFiles) -> None:
    async with _TLS12Relay(certs, mosquitto.port) as old:
        # The default floor, TLS 1.2, reaches it; a floor of 1.3 refuses it.
        async with Client(client_config(old, certs, transport="tcp")) as client:
            await client.publish("t/tls12", b"x", qos=1)
        with pytest.raises(ConnectError, match="(?i)version|protocol"):
            await Client(client_config(old, certs, transport="tcp", tls_version="1.3")).connect()
    # QUIC is TLS 1.3 by definition (RFC 9001): there is no older version to fall to.


async def test_client_certificates_on_a_broker_that_demands_them(
        certs: CertificateFiles, other_ca: CertificateFiles, tmp_path: Path) -> None:
    clients = generate_certificates(tmp_path / "clients", prefix="client-", client_auth=True)
    broker = Mosquitto(tmp_path / "broker", tls=(certs.cert_file, certs.key_file),
                       extra=[f"cafile {clients.ca_file}", "require_certificate true"]).start()
    try:
        target = type("Broker", (), {"tcp_port": broker.tls_port, "quic_port": 9})()
        async with Client(client_config(target, certs, transport="tcp",
                                        certfile=str(clients.cert_file),
                                        keyfile=str(clients.key_file))) as client:
            await client.publish("t/mtls", b"x", qos=1)
        # No certificate, or one from a CA the broker does not know: refused in TLS.
        for settings in ({}, {"certfile": str(other_ca.cert_file),
                              "keyfile": str(other_ca.key_file)}):
            with pytest.raises(ConnectError):
                await Client(client_config(target, certs, transport="tcp", connect_timeout=3.0,
                                           **settings)).connect()
    finally:
        broker.stop()


class _Capture(UdpLink):
    """A UDP relay that keeps a copy of every datagram the client sends."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.captured: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.captured.append(data)
        super().datagram_received(data, addr)


async def _replay(datagrams: list[bytes], port: int) -> None:
    """Send a captured flight again, from another socket, as an attacker on the path can."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                       remote_addr=("127.0.0.1", port))
    try:
        for datagram in datagrams:
            transport.sendto(datagram)
        await asyncio.sleep(0.5)  # the server's answers to it go nowhere
    finally:
        transport.close()


@pytest.mark.parametrize("single_use", [True, False], ids=["gateway", "ticket-reusing-server"])
async def test_a_replayed_0rtt_flight_is_refused(mosquitto_auth: Mosquitto, certs: CertificateFiles,
                                                tmp_path: Path, single_use: bool) -> None:
    async with RecordingGateway(gateway_config(mosquitto_auth, certs),
                                reusable_tickets=not single_use) as server:
        settings = dict(transport="quic", session_ticket_file=str(tmp_path / "tickets"),
                        username="device", password=USERS["device"])
        link = _Capture(server.quic_port)
        through = type("Link", (), {"quic_port": await link.start(), "tcp_port": server.tcp_port})()
        try:
            async with Client(client_config(through, certs, **settings)):
                pass  # a ticket for the next connection
            link.captured.clear()
            async with Client(client_config(through, certs, **settings)) as client:
                assert client.get_stats()["zero_rtt_used"]  # CONNECT went out as 0-RTT data
        finally:
            link.close()
        # Replayed once the server has forgotten the connection (a replay into the live
        # one is only a duplicate it ignores).
        await eventually(lambda: not server._connections, 5.0)
        server.heard.clear()
        upstream, connections = server.upstream_connections, server.quic_connections
        await _replay(link.captured, server.quic_port)
        await eventually(lambda: server.quic_connections > connections, 5.0)  # it was read
        if single_use:
            # The ticket was used: no 0-RTT data is taken, no CONNECT reaches the broker.
            assert server.heard == [] and server.upstream_connections == upstream
        else:
            # What single-use tickets prevent: a server that takes a ticket twice takes the
            # replayed CONNECT again (this also shows that the replay above was real).
            await eventually(lambda: server.upstream_connections > upstream, 5.0)
            assert server.heard_from(USERS["device"].encode())


def _password_free_logs(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    text = "\n".join(f"{record.name} {record.getMessage()} {record.exc_text or ''}"
                     for record in caplog.records)
    assert caplog.records  # DEBUG logging was on and said things
    for secret in secrets:
        assert secret not in text


@TRANSPORTS
async def test_passwords_never_reach_the_logs_even_at_debug(
        auth_gateway: Gateway, certs: CertificateFiles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, transport: str) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, aioquic's, asyncio's
    right, wrong, key_password = USERS["device"], _secret(), _secret()
    settings = dict(transport=transport, username="device")
    async with Client(client_config(auth_gateway, certs, password=right, **settings)) as client:
        await client.publish("t/logs", b"x", qos=1)
    with pytest.raises(ConnectionRefused) as refused:
        await Client(client_config(auth_gateway, certs, password=wrong, **settings)).connect()
    encrypted = _encrypted_key(certs, tmp_path, b"right-password")
    with pytest.raises(TLSFileError) as bad_key:
        await Client(client_config(auth_gateway, certs, password=right, certfile=str(certs.cert_file),
                                   keyfile=str(encrypted), key_password=key_password,
                                   **settings)).connect()
    _password_free_logs(caplog, right, wrong, key_password)
    for exc in (refused.value, bad_key.value):
        assert not {right, wrong, key_password} & set(str(exc).split())
    assert key_password not in repr(ConnectionConfig(key_password=key_password, password=right))
    assert right not in repr(ConnectionConfig(key_password=key_password, password=right))


async def test_the_ticket_file_is_private(gateway: Gateway, certs: CertificateFiles,
                                          tmp_path: Path) -> None:
    path = tmp_path / "deep" / "tickets"
    async with Client(client_config(gateway, certs, transport="quic", session_ticket_file=str(path))):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "ticket" in json.loads(path.read_text())["tickets"].popitem()[1]  # fields, no pickle



# --- the ticket file's owner and mode --------------------------------------------------------

def test_a_file_others_may_write_is_ignored_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A planted ticket would let a server whose certificate the client refuses receive its
    # CONNECT and password: TLS 1.3 resumption authenticates by the ticket's secret.
    path = tmp_path / "t"
    store = TicketStore(path)
    store.save("h:1:localhost", make_ticket())
    path.chmod(0o666)
    with caplog.at_level(logging.WARNING, logger="mqttquic.tickets"):
        assert store.load("h:1:localhost") is None
        assert store.take("h:1:localhost") is None
    assert caplog.text.count("writable by others (mode 0666)") == 1
    # Saving replaces it with a file of ours, mode 0600, which is trusted again.
    store.save("h:1:localhost", make_ticket())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load("h:1:localhost") is not None


def test_a_file_owned_by_someone_else_or_not_a_file_iswhy_untrusted(tmp_path: Path) -> None:
    mine = os.stat(tmp_path)
    assert why_untrusted(mine) == "is not a regular file"
    (tmp_path / "f").write_text("{}")
    (tmp_path / "f").chmod(0o600)
    status = os.stat(tmp_path / "f")
    assert why_untrusted(status) == ""
    fields = list(status)
    fields[4] = status.st_uid + 1  # st_uid
    assert why_untrusted(os.stat_result(fields)).startswith(f"is owned by uid {status.st_uid + 1}")
    # A private key must not be readable by others either.
    (tmp_path / "f").chmod(0o644)
    assert why_untrusted(os.stat(tmp_path / "f"), secret=True) == "is readable by others (mode 0644)"


def test_an_oversized_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t"
    path.write_bytes(b" " * (MAX_FILE_SIZE + 1))
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="mqttquic.tickets"):
        assert TicketStore(path).load("h:1:localhost") is None
    assert f"larger than {MAX_FILE_SIZE} bytes" in caplog.text
