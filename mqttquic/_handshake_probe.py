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

This reaches into aioquic's loss recovery (``_loss``); when that is not what this module
expects, it does nothing and aioquic's own timing applies.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.connection import QuicConnection

logger = logging.getLogger("mqttquic.quic")

# A probe is at most two datagrams (RFC 9002 section 6.2.4) of at least 1200 bytes.
PROBE_BYTES = 2 * 1200


def handle_timer(quic: QuicConnection, now: float) -> None:
    """``quic.handle_timer(now)``, and the application data re-sent with a handshake PTO."""
    loss: Any = getattr(quic, "_loss", None)
    probes_before = getattr(loss, "_pto_count", None)
    quic.handle_timer(now=now)
    if (probes_before is not None and getattr(loss, "_pto_count", probes_before) > probes_before
            and not getattr(loss, "handshake_confirmed", True)):
        resend_with_probe(quic, now)


def resend_with_probe(quic: QuicConnection, now: float) -> int:
    """Schedule the oldest unacknowledged application packets again; how many."""
    loss: Any = getattr(quic, "_loss", None)
    spaces = getattr(loss, "spaces", None)
    if loss is None or not spaces:
        return 0
    for space in spaces:
        if not getattr(space, "is_application_data", False):
            continue
        packets: list[Any] = []
        size = 0
        for packet in space.sent_packets.values():  # in packet number order
            if packet.is_ack_eliciting:
                size += packet.sent_bytes
                if packets and size > PROBE_BYTES:
                    break
                packets.append(packet)
        if not packets:
            return 0
        lost = loss._on_packets_lost
        if "congestion_event" in inspect.signature(lost).parameters:
            lost(congestion_event=False, now=now, packets=packets, space=space)
        else:  # older aioquic: the loss also shrinks the congestion window
            lost(now=now, packets=packets, space=space)
        logger.debug("handshake probe: re-sending %d early application packet(s)", len(packets))
        return len(packets)
    return 0


class ProbeCarriesData(QuicConnectionProtocol):
    """A protocol whose timer goes through :func:`handle_timer` (client and gateway)."""

    def _handle_timer(self) -> None:
        # aioquic's own _handle_timer, with the one call replaced.
        now = max(self._timer_at or 0.0, self._loop.time())
        self._timer = None
        self._timer_at = None
        handle_timer(self._quic, now)
        self._process_events()
        self.transmit()
