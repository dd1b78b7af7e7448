"""Every read or write of aioquic's private state, in one place.

aioquic exposes no API for what a long-lived MQTT connection needs to watch: the
smoothed RTT, whether what we sent is being acknowledged, the peer's stream and idle
limits, the send buffer of a stream, stateless reset tokens, the listening socket of
a server. The client, the gateway, the handshake probe and the stateless resets read
them here, and nowhere else, so an aioquic upgrade is checked in this module (and by
``tests/test_aioquic_internals.py``, which runs each accessor on a real connection).

Each accessor is defensive: when aioquic's internals are not what it expects, it
returns the neutral answer its docstring names (and the feature that uses it falls
back to aioquic's own behaviour) instead of raising.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "abandon_pings", "ack_eliciting_in_flight", "ack_now", "ack_progress", "declare_lost",
    "early_application_packets", "handshake_confirmed", "host_connection_ids", "idle_deadline",
    "idle_timeout", "last_ack_eliciting_sent", "oldest_unacknowledged",
    "on_new_connection_ids", "peer_address", "peer_reset_tokens", "probe_count",
    "probe_timeout", "run_timer", "server_knows", "server_socket", "smoothed_rtt",
    "streams_allowed", "unacknowledged_bytes", "unacknowledged_packets",
]


def _loss(quic: Any) -> Any:
    return getattr(quic, "_loss", None)


# --- acknowledgements ---------------------------------------------------------------------

def ack_now(quic: Any, now: float) -> None:
    """Let the next packet carry the pending ACK of 1-RTT packets. aioquic writes an
    ACK only once its delay (1 ms) has passed: data sent sooner, as the next request
    after a response usually is, goes without it, and a packet holding only the ACK
    follows. Called when data is about to be sent, so the ACK rides with it (RFC 9000
    lets an ACK go early): half the datagrams of a request/response exchange. Does
    nothing when aioquic's ACK state is not what it expects."""
    spaces = getattr(quic, "_spaces", None)
    if not isinstance(spaces, dict):
        return
    # aioquic's Epoch, found where ``quic`` came from: importing aioquic here would
    # load it with the client, before the first connect wants it (off the loop).
    tls = sys.modules.get("aioquic.tls")
    space: Any = spaces.get(getattr(getattr(tls, "Epoch", None), "ONE_RTT", None))
    ack_at = getattr(space, "ack_at", None)
    if isinstance(ack_at, float) and ack_at > now:
        space.ack_at = now


# --- what the peer allows -----------------------------------------------------------------

def streams_allowed(quic: Any) -> int | None:
    """How many bidirectional streams the peer lets us open in all (MAX_STREAMS), or
    None when unknown."""
    value = getattr(quic, "_remote_max_streams_bidi", None)
    return value if isinstance(value, int) else None


def idle_timeout(quic: Any) -> float:
    """The connection's idle timeout: the smaller of ours and the peer's (seconds)."""
    ours = float(getattr(getattr(quic, "_configuration", None), "idle_timeout", 60.0))
    remote = getattr(quic, "_remote_max_idle_timeout", None)
    return min(ours, remote) if isinstance(remote, (int, float)) and remote > 0 else ours


def idle_deadline(quic: Any) -> float | None:
    """When the connection ends if nothing more is received: aioquic moves it on with
    each packet it could decrypt and process."""
    deadline = getattr(quic, "_close_at", None)
    return deadline if isinstance(deadline, float) else None


def peer_reset_tokens(quic: Any) -> list[bytes | None]:
    """The stateless reset tokens the peer gave with its connection IDs."""
    current = getattr(quic, "_peer_cid", None)
    available = getattr(quic, "_peer_cid_available", ())
    return [getattr(current, "stateless_reset_token", None),
            *(getattr(cid, "stateless_reset_token", None) for cid in available)]


def peer_address(quic: Any) -> tuple[Any, ...] | None:
    """The peer's address on the connection's first network path, or None."""
    paths = getattr(quic, "_network_paths", None)
    return tuple(paths[0].addr) if paths else None


# --- acknowledgements and timing ------------------------------------------------------------

def smoothed_rtt(quic: Any) -> float | None:
    """The smoothed RTT in seconds, or None until one is measured."""
    loss = _loss(quic)
    if loss is None or not getattr(loss, "_rtt_initialized", False):
        return None
    rtt = getattr(loss, "_rtt_smoothed", None)
    return float(rtt) if rtt is not None else None


def probe_timeout(quic: Any) -> float:
    """The current probe timeout (PTO), seconds; 1 s when unknown."""
    loss = _loss(quic)
    try:
        return float(loss.get_probe_timeout())
    except AttributeError:
        return 1.0


def last_ack_eliciting_sent(quic: Any) -> float | None:
    """When the last packet that asks for an acknowledgement was sent (loop time)."""
    value = getattr(_loss(quic), "_time_of_last_sent_ack_eliciting_packet", None)
    return float(value) if value else None


def ack_eliciting_in_flight(quic: Any) -> int:
    """How many packets that ask for an acknowledgement are in flight, in all spaces."""
    spaces = getattr(_loss(quic), "spaces", None) or ()
    return sum(getattr(space, "ack_eliciting_in_flight", 0) for space in spaces)


def ack_progress(quic: Any) -> tuple[tuple[Any, ...], bool]:
    """The largest acknowledged packet number of each packet number space, and whether
    any packet that asks for an acknowledgement is still in flight: what changes when
    the peer acknowledges something, and whether it is expected to."""
    spaces = getattr(_loss(quic), "spaces", None) or ()
    marks = tuple(getattr(space, "largest_acked_packet", None) for space in spaces)
    return marks, ack_eliciting_in_flight(quic) > 0


def oldest_unacknowledged(quic: Any) -> float | None:
    """When the oldest ack-eliciting packet still in flight was sent, or None."""
    oldest: float | None = None
    for space in getattr(_loss(quic), "spaces", None) or ():
        for packet in space.sent_packets.values():  # in packet number order
            if packet.is_ack_eliciting and packet.in_flight:
                if oldest is None or packet.sent_time < oldest:
                    oldest = packet.sent_time
                break
    return oldest


def unacknowledged_bytes(quic: Any, stream_id: int) -> int:
    """Bytes queued on a stream that the peer has not acknowledged yet (aioquic drops
    acknowledged bytes from the front of its send buffer); 0 for a stream it forgot."""
    stream = getattr(quic, "_streams", {}).get(stream_id)
    sender = getattr(stream, "sender", None)
    start = getattr(sender, "_buffer_start", 0)
    stop = getattr(sender, "_buffer_stop", 0)
    return max(0, stop - start)


# --- the handshake probe (_handshake_probe.py) -------------------------------------------

def probe_count(quic: Any) -> int | None:
    """How many probe timeouts have fired in a row, or None when unknown."""
    value = getattr(_loss(quic), "_pto_count", None)
    return value if isinstance(value, int) else None


def handshake_confirmed(quic: Any) -> bool:
    """Whether the handshake is confirmed; True when unknown (nothing to help with)."""
    return bool(getattr(_loss(quic), "handshake_confirmed", True))


def early_application_packets(quic: Any, budget: int) -> tuple[Any, list[Any]]:
    """The application data space and its oldest unacknowledged packets that fit in
    ``budget`` bytes (at least one, if any): ``(None, [])`` when there are none."""
    for space in getattr(_loss(quic), "spaces", None) or ():
        if not getattr(space, "is_application_data", False):
            continue
        packets: list[Any] = []
        size = 0
        for packet in space.sent_packets.values():  # in packet number order
            if packet.is_ack_eliciting:
                size += packet.sent_bytes
                if packets and size > budget:
                    break
                packets.append(packet)
        return space, packets
    return None, []


def unacknowledged_packets(quic: Any) -> list[tuple[Any, list[Any]]]:
    """Every packet number space with the ack-eliciting packets it still has in flight."""
    found = []
    for space in getattr(_loss(quic), "spaces", None) or ():
        packets = [packet for packet in space.sent_packets.values()
                   if packet.is_ack_eliciting and packet.in_flight]
        if packets:
            found.append((space, packets))
    return found


def declare_lost(quic: Any, space: Any, packets: list[Any], now: float) -> None:
    """Have aioquic send the frames of ``packets`` again, without a congestion event
    where this aioquic allows it."""
    lost = _loss(quic)._on_packets_lost
    if "congestion_event" in inspect.signature(lost).parameters:
        lost(congestion_event=False, now=now, packets=packets, space=space)
    else:  # older aioquic: the loss also shrinks the congestion window
        lost(now=now, packets=packets, space=space)


def run_timer(protocol: Any, handle: Callable[[Any, float], None]) -> None:
    """aioquic's ``QuicConnectionProtocol._handle_timer`` with ``handle(quic, now)`` in
    place of ``quic.handle_timer(now)``."""
    now = max(protocol._timer_at or 0.0, protocol._loop.time())
    protocol._timer = None
    protocol._timer_at = None
    handle(protocol._quic, now)
    protocol._process_events()
    protocol.transmit()


# --- stateless resets (_resets.py) and the gateway's listener ------------------------------

def host_connection_ids(quic: Any) -> list[Any]:
    """The connection IDs this endpoint issued (each with its reset token)."""
    return list(getattr(quic, "_host_cids", ()))


def on_new_connection_ids(quic: Any, hook: Callable[[], None]) -> None:
    """Call ``hook`` each time aioquic issues new connection IDs."""
    replenish = quic._replenish_connection_ids

    def replenish_then_hook() -> None:
        replenish()
        hook()

    quic._replenish_connection_ids = replenish_then_hook


def server_socket(server: Any) -> Any:
    """The datagram transport an aioquic ``QuicServer`` listens on, or None."""
    return getattr(server, "_transport", None)


def server_knows(server: Any, connection_id: bytes) -> bool:
    """Whether an aioquic ``QuicServer`` has a connection with this ID."""
    return connection_id in getattr(server, "_protocols", {})


def abandon_pings(protocol: Any) -> None:
    """Nobody waits for the answers to ``protocol.ping()`` calls that timed out: aioquic
    fails them when the connection ends, and that failure must not be logged as a
    "Future exception was never retrieved"."""
    for waiter in getattr(protocol, "_ping_waiters", {}).values():
        waiter.add_done_callback(_retrieve)


def _retrieve(future: Any) -> None:
    if not future.cancelled():
        future.exception()
