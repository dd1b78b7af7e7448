"""The handshake's retransmission carries the early application data (sans-I/O).

A client and a server ``QuicConnection`` talk in memory, with a clock we move by hand,
so a datagram can be lost on purpose and the probe timeout fired exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted, QuicEvent, StreamDataReceived
from aioquic.tls import SessionTicket

from mqttquic import _handshake_probe
from mqttquic.certs import CertificateFiles

CLIENT = ("1.2.3.4", 1234)
SERVER = ("2.3.4.5", 4433)
RTT = 0.05


class Pair:
    """A client and a server connection and the datagrams between them."""

    def __init__(self, certs: CertificateFiles, tickets: dict[bytes, SessionTicket],
                 ticket: SessionTicket | None, handle_timer: Callable[[QuicConnection, float], None]):
        client_configuration = QuicConfiguration(is_client=True, alpn_protocols=["mqtt"],
                                                 server_name="localhost", session_ticket=ticket)
        client_configuration.load_verify_locations(str(certs.ca_file))
        server_configuration = QuicConfiguration(is_client=False, alpn_protocols=["mqtt"])
        server_configuration.load_cert_chain(str(certs.cert_file), str(certs.key_file))
        self.received: list[SessionTicket] = []
        self.client = QuicConnection(configuration=client_configuration,
                                     session_ticket_handler=self.received.append)
        self.client.connect(SERVER, now=0.0)
        self.server = QuicConnection(
            configuration=server_configuration,
            original_destination_connection_id=self.client._peer_cid.cid,
            session_ticket_fetcher=tickets.pop,
            session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t))
        self.handle_timer = handle_timer
        self.now = 0.0
        self.server_events: list[QuicEvent] = []
        self.client_events: list[QuicEvent] = []

    def client_datagrams(self) -> list[bytes]:
        return [data for data, _ in self.client.datagrams_to_send(now=self.now)]

    def to_server(self, datagrams: list[bytes]) -> None:
        self.now += RTT / 2
        for data in datagrams:
            self.server.receive_datagram(data, CLIENT, now=self.now)
        self.server_events += iter(self.server.next_event, None)

    def to_client(self) -> None:
        datagrams = [data for data, _ in self.server.datagrams_to_send(now=self.now)]
        self.now += RTT / 2
        for data in datagrams:
            self.client.receive_datagram(data, SERVER, now=self.now)
        self.client_events += iter(self.client.next_event, None)

    def fire_client_timer(self) -> None:
        timer = self.client.get_timer()
        assert timer is not None
        self.now = max(self.now, timer)
        self.handle_timer(self.client, self.now)

    def server_stream_data(self) -> bytes:
        return b"".join(event.data for event in self.server_events
                        if isinstance(event, StreamDataReceived))


def plain_handle_timer(quic: QuicConnection, now: float) -> None:
    quic.handle_timer(now=now)


TIMERS = pytest.mark.parametrize("handle_timer", [plain_handle_timer, _handshake_probe.handle_timer],
                                 ids=["aioquic", "with-probe"])


def a_ticket(certs: CertificateFiles, tickets: dict[bytes, SessionTicket]) -> SessionTicket:
    pair = Pair(certs, tickets, None, plain_handle_timer)
    for _ in range(4):
        pair.to_server(pair.client_datagrams())
        pair.to_client()
    assert pair.received, "the server sent no session ticket"
    return pair.received[-1]


@TIMERS
def test_lost_first_flight_resends_the_0rtt_data(
        certs: CertificateFiles, handle_timer: Callable[[QuicConnection, float], None]) -> None:
    tickets: dict[bytes, SessionTicket] = {}
    ticket = a_ticket(certs, tickets)
    pair = Pair(certs, tickets, ticket, handle_timer)
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, b"CONNECT")
    lost = pair.client_datagrams()
    assert lost  # the ClientHello and the 0-RTT CONNECT, never delivered

    pair.fire_client_timer()
    pair.to_server(pair.client_datagrams())

    assert any(isinstance(e, HandshakeCompleted) for e in pair.server_events) is False
    if handle_timer is plain_handle_timer:
        # aioquic alone: the ClientHello arrives again, the CONNECT does not.
        assert pair.server_stream_data() == b""
    else:
        assert pair.server_stream_data() == b"CONNECT"


@TIMERS
def test_lost_finished_resends_the_1rtt_data(
        certs: CertificateFiles, handle_timer: Callable[[QuicConnection, float], None]) -> None:
    pair = Pair(certs, {}, None, handle_timer)
    pair.to_server(pair.client_datagrams())
    pair.to_client()  # the server's flight: the client's handshake is complete
    assert any(isinstance(e, HandshakeCompleted) for e in pair.client_events)
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, b"CONNECT")
    lost = pair.client_datagrams()
    assert lost  # the client's Finished and the 1-RTT CONNECT, never delivered

    pair.fire_client_timer()
    pair.to_server(pair.client_datagrams())

    assert any(isinstance(e, HandshakeCompleted) for e in pair.server_events)
    if handle_timer is plain_handle_timer:
        assert pair.server_stream_data() == b""
    else:
        assert pair.server_stream_data() == b"CONNECT"


def test_nothing_to_resend_is_harmless(certs: CertificateFiles) -> None:
    pair = Pair(certs, {}, None, _handshake_probe.handle_timer)
    assert _handshake_probe.resend_with_probe(pair.client, pair.now) == 0


def test_a_repeated_first_flight_arrives_when_the_first_copy_is_lost(
        certs: CertificateFiles) -> None:
    tickets: dict[bytes, SessionTicket] = {}
    ticket = a_ticket(certs, tickets)
    pair = Pair(certs, tickets, ticket, plain_handle_timer)
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, b"CONNECT")
    lost = pair.client_datagrams()  # the first copy: never delivered
    assert lost
    assert _handshake_probe.repeat_first_flight(pair.client, pair.now + 0.005) >= 2
    pair.now += 0.005
    pair.to_server(pair.client_datagrams())  # the second copy, no timer fired
    assert pair.server_stream_data() == b"CONNECT"
    pair.to_client()
    assert any(isinstance(e, HandshakeCompleted) and e.early_data_accepted
               for e in pair.client_events)


def test_rejected_early_data_goes_again_in_1rtt(certs: CertificateFiles) -> None:
    tickets: dict[bytes, SessionTicket] = {}
    ticket = a_ticket(certs, tickets)
    forgetful = _Forgetful()  # a server that forgot its tickets (it restarted)
    pair = Pair(certs, forgetful, ticket, plain_handle_timer)
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, b"CONNECT")
    pair.to_server(pair.client_datagrams())
    assert pair.server_stream_data() == b""  # the 0-RTT data was dropped
    pair.to_client()
    [done] = [e for e in pair.client_events if isinstance(e, HandshakeCompleted)]
    assert not done.early_data_accepted
    assert _handshake_probe.resend_rejected_early_data(pair.client, pair.now) >= 1
    pair.to_server(pair.client_datagrams())  # one round trip, no loss detection wait
    assert pair.server_stream_data() == b"CONNECT"


class _Forgetful(dict[bytes, SessionTicket]):
    """A ticket store that knows no ticket (aioquic's fetcher answers None for those)."""

    def pop(self, key: bytes, default: SessionTicket | None = None) -> SessionTicket | None:  # type: ignore[override]
        return super().pop(key, default)
