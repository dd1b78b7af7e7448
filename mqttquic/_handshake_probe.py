"""Re-send the first application data with the handshake's retransmission.

Before the handshake is confirmed, aioquic's probe timeout (PTO) re-sends only CRYPTO
data: application data sent meanwhile neither arms the PTO nor rides with the probe.
Two losses then cost a second timeout each:

* a lost first flight of a resumed connection: the ClientHello is sent again, but the
  0-RTT CONNECT it carried is declared lost only after the handshake, one more RTT and
  timeout later;
* a lost client Finished: the server cannot read (and drops) the 1-RTT packets that
  follow it, and the client learns they are lost only by a later timeout.

When a PTO fires before the handshake is confirmed, :func:`resend_with_probe` also marks
the oldest unacknowledged application packets as lost, without a congestion event (RFC
9002 section 6.2.4 lets a probe carry data that may not be lost), so their frames go out
in the same datagram as the CRYPTO data. Only as many as fit the probe's two datagrams
are taken, oldest first.

The first flights of a connection, whose loss costs the most (the probe timeout rests
on one RTT sample or none), go twice, 5 ms apart (``ProbeCarriesData``): at 5% random
loss the first PUBACK after a resume took 119 / 331 / 604 ms (p50 / p90 / p99, 50 ms
RTT) without the copies after the first RTT sample, 118 / 134 / 277 ms with them.

aioquic's loss recovery is read through ``_aioquic``; when it is not what that module
expects, this does nothing and aioquic's own timing applies.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.connection import QuicConnection

from . import _aioquic

logger = logging.getLogger("mqttquic.quic")

# A probe is at most two datagrams (RFC 9002 section 6.2.4) of at least 1200 bytes.
PROBE_BYTES = 2 * 1200
# A flight sent before the first RTT sample goes again this long after the first copy:
# far enough apart that one short burst of loss does not take both, well within a
# round trip.
REPEAT_AFTER = 0.005


def handle_timer(quic: QuicConnection, now: float) -> None:
    """``quic.handle_timer(now)``, and the application data re-sent with a handshake PTO."""
    probes_before = _aioquic.probe_count(quic)
    quic.handle_timer(now=now)
    probes_after = _aioquic.probe_count(quic)
    if (probes_before is not None and probes_after is not None and probes_after > probes_before
            and not _aioquic.handshake_confirmed(quic)):
        resend_with_probe(quic, now)


def resend_with_probe(quic: QuicConnection, now: float) -> int:
    """Schedule the oldest unacknowledged application packets again; how many."""
    space, packets = _aioquic.early_application_packets(quic, PROBE_BYTES)
    return _send_again(quic, [(space, packets)], now, "handshake probe")


def resend_rejected_early_data(quic: QuicConnection, now: float) -> int:
    """The server rejected our 0-RTT data (it did not know the ticket any more): send it
    again in 1-RTT packets now, instead of when loss detection gives up on it a round
    trip or more later (RFC 9001, section 4.6.2: rejected 0-RTT data is lost)."""
    space, packets = _aioquic.early_application_packets(quic, budget=1 << 30)
    return _send_again(quic, [(space, packets)], now, "0-RTT rejected")


def repeat_first_flight(quic: QuicConnection, now: float) -> int:
    """Send what is in flight once more, without a congestion event: the first flights
    of a connection (the client's ClientHello with its 0-RTT CONNECT and early publishes,
    then its Finished and first publishes; the server's handshake, CONNACK and first
    PUBACKs). Before the first RTT sample a lost packet waits for a probe timeout
    computed from no measurement at all (325 ms with aioquic's defaults), after one
    sample for three RTTs and more; with two copies a flight is lost only when both are
    (5% random loss: 1 in 400, not 1 in 20). How many packets went again."""
    return _send_again(quic, _aioquic.unacknowledged_packets(quic), now, "first flight again")


def _send_again(quic: QuicConnection, spaces: list[tuple[Any, list[Any]]], now: float,
                why: str) -> int:
    """Have aioquic send ``spaces``' packets again (declared lost without a congestion
    event); how many."""
    count = 0
    for space, packets in spaces:
        if packets:
            _aioquic.declare_lost(quic, space, packets, now)
            count += len(packets)
    if count:
        logger.debug("%s: sending %d packet(s) again", why, count)
    return count


class ProbeCarriesData(QuicConnectionProtocol):
    """A protocol whose timer goes through :func:`handle_timer` (client and gateway), and
    whose first flights go a second time ``REPEAT_AFTER`` later
    (:func:`repeat_first_flight`): ``early_repeats`` flights sent before the first RTT
    sample, then ``warmup_repeats`` flights sent after it with data in flight. After
    one sample the RTT variance is half the RTT (RFC 9002, section 5.3), so the probe
    timeout is three RTTs and more: a first publish or PUBACK lost then waits about
    four round trips (at 50 ms: 175 ms for the probe, one RTT after it), twice what a
    loss costs once the estimate has settled."""

    early_repeats = 0
    warmup_repeats = 0
    _repeat: asyncio.TimerHandle | None = None
    _repeating = False

    def _handle_timer(self) -> None:
        _aioquic.run_timer(self, handle_timer)

    def transmit(self) -> None:
        if (self._repeat is not None or self._repeating
                or not (self.early_repeats > 0 or self.warmup_repeats > 0)):
            super().transmit()
            return
        asking = _aioquic.ack_eliciting_in_flight(self._quic)
        super().transmit()
        if _aioquic.smoothed_rtt(self._quic) is None:
            due = self.early_repeats > 0
            if due:
                self.early_repeats -= 1
        else:  # a flight that asks for an acknowledgement, not one of ACKs alone
            due = (self.warmup_repeats > 0
                   and _aioquic.ack_eliciting_in_flight(self._quic) > asking)
            if due:
                self.warmup_repeats -= 1
        if due:
            self._repeat = self._loop.call_later(REPEAT_AFTER, self._repeat_early_flight)

    def _repeat_early_flight(self) -> None:
        """What is still unacknowledged goes again (the flight, and any sent since)."""
        self._repeat = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if repeat_first_flight(self._quic, self._loop.time()):
            self._repeating = True  # the copies are not a flight of their own to repeat
            try:
                self.transmit()
            finally:
                self._repeating = False
