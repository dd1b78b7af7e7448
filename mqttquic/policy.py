"""The client's connection policy, sans I/O: what to do when connects are refused,
connections die and publishes keep failing.

No asyncio and no sockets: times come in as arguments and decisions come out, so
every rule here has socket-free tests (``tests/test_policy.py``), as the MQTT rules
of ``session.py`` do. ``client.py`` carries the decisions out.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["FAST_RETRY_CAP", "FAST_WINDOW", "STREAM_FAILURE_SETTLE", "Backoff", "ConnectionPolicy",
           "PublishAttempts", "refusal_is_final", "v311_return_code"]

# Seconds a publish whose QUIC data stream ended waits to see whether the whole
# connection ends too. A gateway whose broker went away resets data streams first and
# closes the connection a moment later (ours after 0.5 s): that is one loss, not a
# publish the broker refuses.
STREAM_FAILURE_SETTLE = 1.0

# After a connection that had lasted is lost, attempts come at most this many seconds
# apart for FAST_WINDOW seconds: most outages (a restarted broker or gateway, a radio
# gap) end within it, and the client should be back within a second of the server.
# Attempts against a closed port fail at once (ICMP port unreachable, TCP RST), so they
# cost nothing; a server that keeps dropping fresh connections gets the plain backoff.
FAST_RETRY_CAP = 1.0
FAST_WINDOW = 10.0
# A reconnect attempt's connect timeout, first: it doubles with each failed attempt up
# to config.connect_timeout, so an unanswered handshake does not set the cadence.
FIRST_ATTEMPT_TIMEOUT = 2.0

# CONNACK codes that another attempt with the same settings cannot fix: the protocol
# version, the client id, credentials, authorization, bans, the auth method.
_FINAL_V311 = frozenset({1, 2, 4, 5})
_FINAL_V5 = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})

# paho reports an MQTT 3.1.1 CONNACK return code in MQTT 5 numbering
# (paho.mqtt._packet.convert_connack_rc_to_reason_code); this undoes it.
_V311_FROM_V5 = {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}


def refusal_is_final(reason_code: int, protocol_version: int) -> bool:
    """Whether a refused CONNACK ends all attempts (no reconnect, publishes fail)."""
    return reason_code in (_FINAL_V5 if protocol_version == 5 else _FINAL_V311)


def v311_return_code(paho_code: int) -> int:
    """The MQTT 3.1.1 CONNACK return code behind the MQTT 5 code paho reports for it
    (0x87 "Not authorized" -> 5); codes that are already 3.1.1 pass unchanged."""
    if paho_code < 0x80:
        return paho_code
    return _V311_FROM_V5.get(paho_code, 3)  # "server unavailable" for paho's catch-all


class Backoff:
    """Exponential backoff with full jitter between reconnect attempts.

    Unlike a counter that restarts at every successful connect, it restarts only
    after a connection has stayed up for ``stable_after`` seconds: a broker that
    accepts CONNECT and then drops the connection at once (a poison publish, a
    session taken over, an overloaded broker) sees the delays keep growing instead
    of a reconnect every ``min_delay``."""

    def __init__(self, min_delay: float, max_delay: float, *, stable_after: float = 10.0,
                 rng: Callable[[], float] = random.random) -> None:
        if min_delay < 0 or max_delay < min_delay:
            raise ValueError("backoff needs 0 <= min_delay <= max_delay")
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.attempts = 0
        self._rng = rng
        self._connected_at: float | None = None

    def next_delay(self, cap: float | None = None) -> float:
        """Seconds to wait before the next attempt (and count it); ``cap`` bounds the
        ceiling this once."""
        ceiling: float = min(self.max_delay, self.min_delay * 2.0 ** min(self.attempts, 32))
        if cap is not None:
            ceiling = min(ceiling, cap)
        self.attempts += 1
        return self._rng() * ceiling

    def connected(self, now: float) -> None:
        self._connected_at = now

    def lost(self, now: float) -> None:
        """The connection ended: a connection that lasted restarts the backoff."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_after:
            self.attempts = 0
        self._connected_at = None


class PublishAttempts:
    """How often one publish may be cut off before it is given up as a poison publish.

    A publish is *cut off* when the connection (or, over QUIC, its data stream) ends
    while the publish waits for its acknowledgement. Once is a bad network; the same
    publish cutting off ``limit`` connections in a row is a publish the broker will
    not take (larger than its maximum packet size, a topic it disconnects for), and
    sending it again would only kill the next connection too."""

    __slots__ = ("limit", "cut_offs", "last_cause")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a publish needs at least one attempt")
        self.limit = limit
        self.cut_offs = 0
        self.last_cause = ""

    def cut_off(self, cause: str) -> bool:
        """Count a cut-off; True while the publish may be sent again."""
        self.cut_offs += 1
        self.last_cause = cause
        return self.cut_offs < self.limit

    def reason(self) -> str:
        return (f"the connection ended {self.cut_offs} times while it was in flight"
                f" (last: {self.last_cause}); the broker does not take it")


class ConnectionPolicy:
    """The connection's life as the client sees it, and what to do at each turn.

    States::

        idle --open()--> connecting --connected()--> connected
        connected --lost()--> reconnecting --connected()--> connected
        connected --handover_started()--> handover --connected()/lost()--> ...
        any --close()--> closed            any --fail()--> failed

    ``lost()`` says whether to reconnect; ``attempt_failed()`` whether a reconnect
    attempt may be followed by another; ``why_not_wait()`` whether a publish may wait
    for the connection to come back (and why not). The asyncio driver
    (``connector.Connector``) carries the decisions out.
    """

    def __init__(self, *, reconnect: bool, protocol_version: int, max_offline_waiting: int,
                 backoff: Backoff) -> None:
        self.reconnect = reconnect
        self.protocol_version = protocol_version
        self.max_offline_waiting = max_offline_waiting
        self.backoff = backoff
        self.state = "idle"
        self.fatal: BaseException | None = None
        self.ever_connected = False
        self.offline_waiting = 0
        # Until when (monotonic seconds) reconnect attempts come at least every
        # FAST_RETRY_CAP seconds: set by the loss of a connection that had lasted.
        self.fast_until: float | None = None

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"

    def open(self) -> None:
        """The user asks to connect (again, after close() or a failure)."""
        self.state = "connecting"
        self.fatal = None

    def connected(self, now: float) -> None:
        self.state = "connected"
        self.ever_connected = True
        self.backoff.connected(now)

    def handover_started(self) -> None:
        """A planned move (TCP+TLS to QUIC): the old connection's end is no loss."""
        if self.state == "connected":
            self.state = "handover"

    def handover_ended(self) -> None:
        if self.state == "handover":
            self.state = "connected"

    def lost(self, now: float, planned: bool = False) -> str:
        """The current connection ended without close(): "ignore" (closed, failed, or a
        planned handover whose probe decides), "reconnect", or "fail"."""
        if self.state in ("closed", "failed", "reconnecting"):
            return "ignore"
        if planned or self.state == "handover":
            return "ignore"
        self.backoff.lost(now)
        # A connection that had lasted (its backoff restarted): an outage, retried fast.
        self.fast_until = now + FAST_WINDOW if self.backoff.attempts == 0 else None
        if self.reconnect:
            self.state = "reconnecting"
            return "reconnect"
        self.state = "failed"
        return "fail"

    def next_delay(self, now: float) -> float:
        """Seconds until the next reconnect attempt: the backoff's, at most
        FAST_RETRY_CAP within FAST_WINDOW of losing a connection that had lasted."""
        fast = self.fast_until is not None and now < self.fast_until
        return self.backoff.next_delay(FAST_RETRY_CAP if fast else None)

    def attempt_timeout(self, connect_timeout: float, failed: int) -> float:
        """The connect timeout of a reconnect attempt after ``failed`` failed ones:
        FIRST_ATTEMPT_TIMEOUT doubling up to ``connect_timeout``. A server that does not
        answer costs a short attempt, and the backoff, not the timeout, sets the pace."""
        return min(connect_timeout, FIRST_ATTEMPT_TIMEOUT * 2.0 ** min(failed, 16))

    def attempt_failed(self, exc: BaseException) -> bool:
        """A reconnect attempt failed with ``exc``: True to try again, False when the
        refusal is final (the state is then "failed")."""
        code = getattr(exc, "reason_code", None)
        if code is not None and refusal_is_final(code, self.protocol_version):
            self.fail(exc)
            return False
        return self.state == "reconnecting"

    def fail(self, exc: BaseException) -> None:
        self.state = "failed"
        self.fatal = exc

    def close(self) -> None:
        self.state = "closed"

    def why_not_wait(self) -> str | None:
        """Why a publish may not wait for the connection to come back, or None.

        "failed", "closed", "not connected" (never connected, or no reconnect) or
        "queue full" (``max_offline_waiting`` publishes wait already)."""
        if self.state == "failed":
            return "failed"
        if self.state == "closed":
            return "closed"
        if not (self.reconnect and self.ever_connected):
            return "not connected"
        if self.offline_waiting >= self.max_offline_waiting:
            return "queue full"
        return None
