"""The connection policy, socket-free: refusals, backoff, poison publishes."""

from __future__ import annotations

import pytest

from mqttquic.errors import ConnectError, ConnectionRefused
from mqttquic.policy import (
    Backoff,
    ConnectionPolicy,
    Loss,
    NoWait,
    PublishAttempts,
    QuicProbes,
    State,
    refusal_is_final,
)
from mqttquic.transports.tcp import v311_return_code


@pytest.mark.parametrize(("code", "version", "final"), [
    (1, 4, True), (2, 4, True), (3, 4, False), (4, 4, True), (5, 4, True),
    (0x84, 5, True), (0x86, 5, True), (0x87, 5, True), (0x8A, 5, True), (0x8C, 5, True),
    (0x88, 5, False), (0x89, 5, False), (0x97, 5, False), (0x9F, 5, False),
])
def test_final_refusals(code: int, version: int, final: bool) -> None:
    assert refusal_is_final(code, version) is final


def test_paho_numbering_of_mqtt311_return_codes_is_undone() -> None:
    # paho 2 reports a 3.1.1 CONNACK return code in MQTT 5 numbering.
    assert [v311_return_code(c) for c in (0x84, 0x85, 0x88, 0x86, 0x87)] == [1, 2, 3, 4, 5]
    assert v311_return_code(5) == 5
    assert v311_return_code(0x80) == 3  # paho's "Unspecified error": not final
    assert refusal_is_final(v311_return_code(0x87), 4)


def test_backoff_grows_exponentially_to_the_ceiling_with_full_jitter() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    low = Backoff(0.5, 30.0, rng=lambda: 0.0)
    assert low.next_delay() == 0.0


def test_backoff_keeps_growing_while_connections_die_right_after_connack() -> None:
    backoff = Backoff(0.5, 30.0, stable_after=10.0, rng=lambda: 1.0)
    now = 0.0
    delays = []
    for _ in range(5):
        delays.append(backoff.next_delay())
        backoff.connected(now)
        now += 0.2  # the broker drops it at once
        backoff.lost(now)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_backoff_restarts_after_a_connection_that_lasted() -> None:
    backoff = Backoff(0.5, 30.0, stable_after=10.0, rng=lambda: 1.0)
    for _ in range(4):
        backoff.next_delay()
    backoff.connected(100.0)
    backoff.lost(111.0)
    assert backoff.next_delay() == 0.5


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(5.0, 1.0)


def test_a_publish_is_given_up_after_its_attempts() -> None:
    attempts = PublishAttempts(3)
    assert attempts.cut_off("stream 4 reset")
    assert attempts.cut_off("connection lost")
    assert not attempts.cut_off("broker disconnected: Packet too large (0x95)")
    assert attempts.reason() == ("the connection ended 3 times while it was in flight (last:"
                                 " broker disconnected: Packet too large (0x95)); the broker"
                                 " does not take it")
    with pytest.raises(ValueError):
        PublishAttempts(0)


def _policy(reconnect: bool = True, version: int = 4, max_offline: int = 2) -> ConnectionPolicy:
    return ConnectionPolicy(reconnect=reconnect, protocol_version=version,
                            max_offline_waiting=max_offline,
                            backoff=Backoff(0.5, 30.0, rng=lambda: 1.0))


def test_start_makes_the_first_connection_as_a_reconnect_and_requests_wait_for_it() -> None:
    policy = _policy(reconnect=False)
    policy.start()
    assert policy.state is State.RECONNECTING
    assert policy.why_not_wait() is None  # publishes wait for the first connection
    assert policy.attempt_failed(ConnectError("refused at once"))  # tried again
    assert not policy.attempt_failed(ConnectionRefused(4, "Bad user name or password"))
    assert policy.why_not_wait() is NoWait.FAILED
    policy.start()
    policy.connected(0.0)
    assert policy.lost(1.0) is Loss.FAIL  # reconnect=False holds once connected
    policy.open()
    assert not policy.started and policy.why_not_wait() is NoWait.NOT_CONNECTED


def test_a_loss_reconnects_and_later_losses_during_it_are_ignored() -> None:
    policy = _policy()
    assert policy.why_not_wait() is NoWait.NOT_CONNECTED  # never connected: nothing to wait for
    policy.open()
    policy.connected(0.0)
    assert policy.lost(1.0) is Loss.RECONNECT and policy.state is State.RECONNECTING
    assert policy.lost(1.1) is Loss.IGNORE
    assert policy.why_not_wait() is None  # publishes may wait for the reconnect
    assert policy.next_delay(1.5) == 0.5
    assert policy.attempt_failed(ConnectionRefused(3, "Server unavailable"))  # not final
    assert policy.next_delay(2.0) == 1.0
    policy.connected(5.0)
    assert policy.state is State.CONNECTED


@pytest.mark.parametrize(("version", "code"), [(4, 5), (4, 4), (5, 0x87), (5, 0x86)])
def test_a_final_refusal_while_reconnecting_fails_for_good(version: int, code: int) -> None:
    policy = _policy(version=version)
    policy.open()
    policy.connected(0.0)
    policy.lost(1.0)
    refusal = ConnectionRefused(code, "refused")
    assert not policy.attempt_failed(refusal)
    assert policy.state is State.FAILED and policy.fatal is refusal
    assert policy.why_not_wait() is NoWait.FAILED
    assert policy.lost(2.0) is Loss.IGNORE
    policy.open()  # the user may try again (new credentials, say)
    assert policy.fatal is None and policy.state is State.CONNECTING


def test_without_reconnect_a_loss_fails() -> None:
    policy = _policy(reconnect=False)
    policy.open()
    policy.connected(0.0)
    assert policy.lost(1.0) is Loss.FAIL and policy.state is State.FAILED
    assert policy.why_not_wait() is NoWait.FAILED


def test_a_planned_handover_is_no_loss() -> None:
    policy = _policy()
    policy.open()
    policy.connected(0.0)
    policy.handover_started()
    assert policy.lost(1.0, planned=True) is Loss.IGNORE
    assert policy.lost(1.0) is Loss.IGNORE  # whatever ends during the handover: the probe decides
    policy.handover_ended()
    assert policy.state is State.CONNECTED
    assert policy.lost(2.0) is Loss.RECONNECT


def test_close_ends_everything_and_offline_waiters_are_bounded() -> None:
    policy = _policy(max_offline=2)
    policy.open()
    policy.connected(0.0)
    policy.lost(1.0)
    policy.offline_waiting = 2
    assert policy.why_not_wait() is NoWait.QUEUE_FULL
    policy.close()
    assert policy.why_not_wait() is NoWait.CLOSED
    assert policy.lost(2.0) is Loss.IGNORE
    assert not policy.attempt_failed(ConnectError("timed out"))  # closed: no more attempts


def test_an_outage_after_a_connection_that_lasted_is_retried_every_second_for_ten_seconds() -> None:
    # The client should be back within a second of the server for outages up to 10 s;
    # attempts against a closed port fail at once, so they cost nothing.
    policy = _policy()
    policy.open()
    policy.connected(0.0)
    assert policy.lost(100.0) is Loss.RECONNECT
    delays = [policy.next_delay(100.0 + t) for t in (0.5, 1.5, 2.5, 4.0, 6.0, 9.9)]
    assert delays == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    # Past the window, the backoff's own delays, grown meanwhile.
    assert policy.next_delay(110.5) == 30.0


def test_a_connection_that_dies_at_once_gets_no_fast_retries() -> None:
    # A broker that accepts CONNECT and drops the connection: the backoff keeps growing.
    policy = _policy()
    policy.open()
    policy.connected(0.0)
    policy.lost(100.0)
    for t in range(5):
        policy.next_delay(100.0 + t)
    policy.connected(105.0)
    policy.lost(105.2)  # lasted 0.2 s
    assert policy.fast_until is None
    assert policy.next_delay(105.3) == 16.0


def test_reconnect_attempts_start_short_and_grow_to_the_connect_timeout() -> None:
    policy = _policy()
    assert [policy.attempt_timeout(10.0, failed) for failed in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.attempt_timeout(1.0, 0) == 1.0


def test_quic_gets_a_head_start_of_six_round_trips_and_none_after_a_dead_path() -> None:
    policy = ConnectionPolicy(reconnect=True, protocol_version=4, max_offline_waiting=10,
                              backoff=Backoff(0.1, 1.0))
    assert policy.head_start(0.3, None) == 0.3
    assert policy.head_start(0.3, 0.1) == pytest.approx(0.6)  # a lost Initial fits in it
    policy.open()
    policy.connected(0.0)
    policy.lost(20.0, path_dead=True)
    assert policy.head_start(0.3, 0.1) == 0.0  # TCP+TLS races at once ...
    assert policy.head_start(0.3, 0.1) == pytest.approx(0.6)  # ... once


def test_quic_probes_start_soon_and_back_off_to_the_interval() -> None:
    probes = QuicProbes(5.0)
    assert [probes.next_pause() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert QuicProbes(0.2).next_pause() == 0.2
    assert QuicProbes.timeout(10.0) == 2.0 and QuicProbes.timeout(1.0) == 1.0


def test_a_stream_cut_off_by_a_connection_going_away_is_not_counted() -> None:
    attempts = PublishAttempts(2)
    # The data stream ended and the connection did not answer a PINGREQ: one outage.
    for _ in range(5):
        assert attempts.cut_off("stream 4 closed", stream_only=True, connection_alive=False)
    assert attempts.cut_offs == 0
    # The connection answered: the stream ended for this publish.
    assert attempts.cut_off("stream 8 closed", stream_only=True, connection_alive=True)
    assert not attempts.cut_off("connection lost")
    assert "2 times" in attempts.reason() and "connection lost" in attempts.reason()


def test_a_connack_refused_after_connect_returned_is_final_when_the_code_is() -> None:
    # early_publish: connect() returned before the CONNACK, which then refuses.
    policy = ConnectionPolicy(reconnect=True, protocol_version=4, max_offline_waiting=10,
                              backoff=Backoff(0.1, 1.0))
    policy.open()
    policy.connected(0.0)
    assert policy.lost(1.0, refused=ConnectionRefused(3, "server unavailable")) is Loss.RECONNECT
    policy.connected(2.0)
    refusal = ConnectionRefused(5, "not authorized")
    assert policy.lost(3.0, refused=refusal) is Loss.FAIL
    assert policy.state is State.FAILED and policy.fatal is refusal
