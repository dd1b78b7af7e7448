"""The client's connection policy, sans I/O: what to do when connects are refused,
connections die and publishes keep failing.

No asyncio and no sockets: times come in as arguments and decisions come out, so
every rule here has socket-free tests (``tests/test_policy.py``), as the MQTT rules
of ``session.py`` do. ``client.py`` carries the decisions out.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

__all__ = ["FAST_RETRY_CAP", "FAST_WINDOW", "Backoff", "ConnectionPolicy", "Loss", "NoWait",
           "PublishAttempts", "QuicProbes", "State", "refusal_is_final"]

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
# The head start QUIC gets over TCP+TLS, in round trips of the known path at least.
HEAD_START_RTTS = 6
# While on TCP+TLS: the first QUIC probe after this many seconds, then doubling up to
# config.quic_probe_interval; a probe gives up after PROBE_TIMEOUT seconds.
FIRST_PROBE_AFTER = 0.5
PROBE_TIMEOUT = 2.0
# How long a publish whose QUIC data stream ended waits for the connection to answer
# a PINGREQ: the answer tells a stream the server ended for this publish from a
# connection that is going away (a gateway whose broker left resets the data streams
# first). A round trip, with room for a lossy path.
CONFIRM_ALIVE_WITHIN = 2.0

# QoS 2 publishes in flight at once under MQTT 3.1.1, which has no Receive Maximum to
# say what the broker takes: mosquitto takes 20 from a client (max_inflight_messages),
# answers PUBREC to the rest and drops them, so more would lose messages in silence.
# paho-mqtt's default window is the same 20. MQTT 5 follows the CONNACK instead.
QOS2_IN_FLIGHT_V311 = 20

# CONNACK codes that another attempt with the same settings cannot fix: the protocol
# version, the client id, credentials, authorization, bans, the auth method.
_FINAL_V311 = frozenset({1, 2, 4, 5})
_FINAL_V5 = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})


class State(enum.StrEnum):
    """Where the connection's life stands (``ConnectionPolicy.state``)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    HANDOVER = "handover"  # a planned move from TCP+TLS to QUIC
    RECONNECTING = "reconnecting"
    CLOSED = "closed"
    FAILED = "failed"


class Loss(enum.Enum):
    """What to do about a connection that ended (``ConnectionPolicy.lost()``)."""

    IGNORE = "ignore"
    RECONNECT = "reconnect"
    FAIL = "fail"


class NoWait(enum.Enum):
    """Why a request may not wait for the connection (``ConnectionPolicy.why_not_wait()``)."""

    FAILED = "failed"
    CLOSED = "closed"
    NOT_CONNECTED = "not connected"
    QUEUE_FULL = "queue full"


def refusal_is_final(reason_code: int, protocol_version: int) -> bool:
    """Whether a refused CONNACK ends all attempts (no reconnect, publishes fail)."""
    return reason_code in (_FINAL_V5 if protocol_version == 5 else _FINAL_V311)


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

    def cut_off(self, cause: str, *, stream_only: bool = False,
                connection_alive: bool = True) -> bool:
        """A cut-off: True while the publish may be sent again.

        ``stream_only``: only its QUIC data stream ended, and ``connection_alive`` says
        whether the connection answered a PINGREQ after that. One that did not is
        going away (a gateway resets the data streams of a broker that left, then
        closes the connection): one outage, not this publish's fault, so not counted."""
        self.last_cause = cause
        if stream_only and not connection_alive:
            return True
        self.cut_offs += 1
        return self.cut_offs < self.limit

    def reason(self) -> str:
        return (f"the connection ended {self.cut_offs} times while it was in flight"
                f" (last: {self.last_cause}); the broker does not take it")


class ConnectionPolicy:
    """The connection's life as the client sees it, and what to do at each turn.

    States (``State``)::

        idle --open()--> connecting --connected()--> connected
        idle --start()--> reconnecting (the first connection, made in the background)
        connected --lost()--> reconnecting --connected()--> connected
        connected --handover_started()--> handover --connected()/lost()--> ...
        any --close()--> closed            any --fail()--> failed

    ``lost()`` says whether to reconnect; ``next_delay()`` and ``attempt_timeout()``
    pace the attempts and ``attempt_failed()`` says whether another may follow;
    ``head_start()`` how long QUIC races alone; ``why_not_wait()`` whether a request
    may wait for the connection to come back. The asyncio driver
    (``connector.Connector``) carries the decisions out.
    """

    def __init__(self, *, reconnect: bool, protocol_version: int, max_offline_waiting: int,
                 backoff: Backoff) -> None:
        self.reconnect = reconnect
        self.protocol_version = protocol_version
        self.max_offline_waiting = max_offline_waiting
        self.backoff = backoff
        self.state = State.IDLE
        self.fatal: BaseException | None = None
        self.ever_connected = False
        # start(): the first connection is made in the background, attempt after
        # attempt, and requests wait for it as they wait for a reconnect.
        self.started = False
        self.offline_waiting = 0
        # Until when (monotonic seconds) reconnect attempts come at least every
        # FAST_RETRY_CAP seconds: set by the loss of a connection that had lasted.
        self.fast_until: float | None = None
        # The last QUIC connection's path died: the next race gives QUIC no head start.
        self.quic_suspect = False

    @property
    def is_closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def is_failed(self) -> bool:
        return self.state is State.FAILED

    def open(self) -> None:
        """The user asks to connect (again, after close() or a failure)."""
        self.state = State.CONNECTING
        self.fatal = None
        self.started = False

    def start(self) -> None:
        """The user asks to connect in the background (a device that may start
        offline): attempts follow the backoff until one connects, as a reconnect's do;
        the first comes at once."""
        self.state = State.RECONNECTING
        self.fatal = None
        self.started = True

    def connected(self, now: float) -> None:
        self.state = State.CONNECTED
        self.ever_connected = True
        self.backoff.connected(now)

    def handover_started(self) -> None:
        """A planned move (TCP+TLS to QUIC): the old connection's end is no loss."""
        if self.state is State.CONNECTED:
            self.state = State.HANDOVER

    def handover_ended(self) -> None:
        if self.state is State.HANDOVER:
            self.state = State.CONNECTED

    def lost(self, now: float, planned: bool = False, path_dead: bool = False,
             refused: BaseException | None = None) -> Loss:
        """The current connection ended without close(). IGNORE when closed, failed, or
        a planned handover (whose probe decides). ``path_dead``: its QUIC path stopped
        acknowledging, so QUIC gets no head start in the next race. ``refused``: the
        CONNACK came after connect() returned (early publish) and refused; a final
        refusal fails as it would have at connect()."""
        if self.state in (State.CLOSED, State.FAILED, State.RECONNECTING):
            return Loss.IGNORE
        if planned or self.state is State.HANDOVER:
            return Loss.IGNORE
        code = getattr(refused, "reason_code", None)
        if refused is not None and code is not None and refusal_is_final(code, self.protocol_version):
            self.fail(refused)
            return Loss.FAIL
        self.quic_suspect = path_dead
        self.backoff.lost(now)
        # A connection that had lasted (its backoff restarted): an outage, retried fast.
        self.fast_until = now + FAST_WINDOW if self.backoff.attempts == 0 else None
        if self.reconnect:
            self.state = State.RECONNECTING
            return Loss.RECONNECT
        self.state = State.FAILED
        return Loss.FAIL

    def head_start(self, configured: float, path_rtt: float | None) -> float:
        """Seconds QUIC races alone before TCP+TLS joins: ``configured``, and at least
        the time of a handshake with one lost Initial on this path (2 RTT plus a
        retransmission after 2 RTT), so that one lost packet does not hand the session
        to TCP+TLS. 0 after a dead path: QUIC is likely still dead. Asked once per
        race (the suspicion is spent)."""
        suspect, self.quic_suspect = self.quic_suspect, False
        if suspect:
            return 0.0
        if path_rtt is not None:
            return max(configured, HEAD_START_RTTS * path_rtt)
        return configured

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
        refusal is final (the state is then FAILED) or the client closed meanwhile."""
        code = getattr(exc, "reason_code", None)
        if code is not None and refusal_is_final(code, self.protocol_version):
            self.fail(exc)
            return False
        return self.state is State.RECONNECTING

    def fail(self, exc: BaseException) -> None:
        self.state = State.FAILED
        self.fatal = exc

    def close(self) -> None:
        self.state = State.CLOSED

    def why_not_wait(self) -> NoWait | None:
        """Why a request may not wait for the connection to come back, or None.
        NOT_CONNECTED: never connected (nor started in the background), or no
        reconnect; QUEUE_FULL:
        ``max_offline_waiting`` requests wait already."""
        if self.state is State.FAILED:
            return NoWait.FAILED
        if self.state is State.CLOSED:
            return NoWait.CLOSED
        if not (self.reconnect if self.ever_connected else self.started):
            return NoWait.NOT_CONNECTED
        if self.offline_waiting >= self.max_offline_waiting:
            return NoWait.QUEUE_FULL
        return None


class QuicProbes:
    """While on TCP+TLS, when to try QUIC again: soon at first (QUIC may have failed
    for a moment only), then the pause doubles after each failed probe up to
    ``interval``; each probe gives up after PROBE_TIMEOUT, not the full connect
    timeout."""

    __slots__ = ("interval", "_pause")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pause = min(FIRST_PROBE_AFTER, interval)

    def next_pause(self) -> float:
        """Seconds until the next probe."""
        pause = self._pause
        self._pause = min(pause * 2, self.interval)
        return pause

    @staticmethod
    def timeout(connect_timeout: float) -> float:
        return min(PROBE_TIMEOUT, connect_timeout)
