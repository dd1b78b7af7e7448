"""mqttquic/_aioquic.py against the installed aioquic: every accessor of its private
state, read on a real connection (client and gateway, over loopback).

An aioquic upgrade that moves one of them fails here, by name, instead of quietly
turning off the feature that reads it (the accessors fall back to neutral answers)."""

from __future__ import annotations

from typing import Any

from mqttquic import _aioquic
from mqttquic.certs import CertificateFiles
from mqttquic.client import Client
from mqttquic.gateway import Gateway

from .conftest import client_config
from .waits import eventually


async def test_the_client_side_accessors_read_a_live_connection(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    async with Client(client_config(gateway, certs, keepalive=20)) as client:
        transport: Any = client._connector.transport
        quic = transport._quic
        await client.publish(f"{topic_root}/t", b"x", qos=1)
        rtt = _aioquic.smoothed_rtt(quic)
        assert rtt is not None and 0 < rtt < 1.0
        allowed = _aioquic.streams_allowed(quic)
        assert allowed is not None and allowed >= 2
        # Ours is 1.5 x keepalive (30 s); the gateway's is its own idle timeout.
        assert 0 < _aioquic.idle_timeout(quic) <= 30.0
        assert 0 < _aioquic.probe_timeout(quic) < 1.0
        assert _aioquic.last_ack_eliciting_sent(quic) is not None
        tokens = _aioquic.peer_reset_tokens(quic)
        assert tokens and isinstance(tokens[0], bytes) and len(tokens[0]) == 16
        # Each datagram aioquic processes moves the idle deadline (the reset check's cue).
        deadline = _aioquic.idle_deadline(quic)
        assert deadline is not None and deadline > transport._loop.time()
        await client.publish(f"{topic_root}/t", b"y", qos=1)
        assert (_aioquic.idle_deadline(quic) or 0.0) > deadline
        marks, _ = _aioquic.ack_progress(quic)
        assert marks and any(mark is not None for mark in marks)
        # Bytes sent wait for their acknowledgement, then leave the send buffer.
        stream_id = transport.control_stream
        quic.send_stream_data(stream_id, bytes([0xC0, 0]))  # a PINGREQ
        assert _aioquic.unacknowledged_bytes(quic, stream_id) >= 2
        transport.transmit()
        await eventually(lambda: _aioquic.unacknowledged_bytes(quic, stream_id) == 0, 5)
        await eventually(lambda: not _aioquic.ack_progress(quic)[1], 5)
        assert _aioquic.oldest_unacknowledged(quic) is None
        # Nothing in flight and the handshake confirmed: the probe has nothing to resend.
        assert _aioquic.handshake_confirmed(quic)
        assert _aioquic.probe_count(quic) == 0
        space, packets = _aioquic.early_application_packets(quic, 2400)
        assert space is not None and packets == []


async def test_the_server_side_accessors_read_the_gateway(
        gateway: Gateway, certs: CertificateFiles) -> None:
    async with Client(client_config(gateway, certs)):
        listener = _aioquic.server_socket(gateway._server)
        assert listener is not None
        assert listener.get_extra_info("sockname")[1] == gateway.quic_port
        [connection] = list(gateway._connections)
        quic = connection._quic
        ids = _aioquic.host_connection_ids(quic)
        assert ids and all(gateway.resets.token(cid.cid) == cid.stateless_reset_token
                           for cid in ids)
        assert _aioquic.server_knows(gateway._server, ids[0].cid)
        assert not _aioquic.server_knows(gateway._server, b"\x00" * 8)
        address = _aioquic.peer_address(quic)
        assert address is not None and address[0] in ("127.0.0.1", "::ffff:127.0.0.1")


async def test_acknowledgements_ride_with_the_next_request_and_its_answer(
        gateway: Gateway, certs: CertificateFiles, topic_root: str) -> None:
    # ack_now(): the client's PUBLISH carries the ACK of the last PUBACK, the gateway's
    # PUBACK the ACK of the PUBLISH. Before: a packet holding only an ACK followed each
    # (aioquic acknowledges after 1 ms), twice the datagrams each way. And
    # QuicPump.datagram_received defers aioquic's transmit to the next turn of the loop,
    # so the PUBACK's publisher writes its next PUBLISH first and one datagrams_to_send
    # sends both. Before: two per publish, one of them sending nothing.
    async with Client(client_config(gateway, certs, transport="quic")) as client:
        transport: Any = client._connector.transport
        await client.publish(f"{topic_root}/t", b"x", qos=1)
        sent = received = builds = empty = 0
        sendto, receive = transport._transport.sendto, transport._quic.receive_datagram
        build = transport._quic.datagrams_to_send

        def counting_sendto(*args: Any) -> None:
            nonlocal sent
            sent += 1
            sendto(*args)

        def counting_receive(*args: Any, **kwargs: Any) -> None:
            nonlocal received
            received += 1
            receive(*args, **kwargs)

        def counting_build(*args: Any, **kwargs: Any) -> Any:
            nonlocal builds, empty
            datagrams = build(*args, **kwargs)
            builds += 1
            empty += not datagrams
            return datagrams

        transport._transport.sendto = counting_sendto
        transport._quic.receive_datagram = counting_receive
        transport._quic.datagrams_to_send = counting_build
        for i in range(50):
            await client.publish(f"{topic_root}/t", str(i), qos=1)
        # One each way per publish (50, 50 here); two before. Room for a loaded machine,
        # where the 1 ms ACK timer can fire before the next publish is written.
        assert sent <= 75 and received <= 75, (sent, received)
        # 50 transmits, none empty, here (100 and 50 before).
        assert builds <= 75 and empty <= 25, (builds, empty)


def test_the_accessors_fall_back_to_neutral_answers() -> None:
    class Unknown:  # what a future aioquic might look like to them
        pass

    quic = Unknown()
    assert _aioquic.smoothed_rtt(quic) is None
    assert _aioquic.streams_allowed(quic) is None
    assert _aioquic.idle_timeout(quic) == 60.0
    assert _aioquic.probe_timeout(quic) == 1.0
    assert _aioquic.last_ack_eliciting_sent(quic) is None
    assert _aioquic.ack_progress(quic) == ((), False)
    assert _aioquic.oldest_unacknowledged(quic) is None
    assert _aioquic.unacknowledged_bytes(quic, 0) == 0
    assert _aioquic.probe_count(quic) is None
    assert _aioquic.handshake_confirmed(quic)
    assert _aioquic.early_application_packets(quic, 2400) == (None, [])
    assert _aioquic.peer_reset_tokens(quic) == [None]
    assert _aioquic.peer_address(quic) is None
    assert _aioquic.host_connection_ids(quic) == []
    assert _aioquic.server_socket(quic) is None
    _aioquic.ack_now(quic, 0.0)  # nothing to do, no error
