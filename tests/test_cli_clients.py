"""``mqttquic pub`` / ``sub`` with mosquitto_pub's and mosquitto_sub's flags, run as
processes against the real gateway and mosquitto; the flag parsing without sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from mqttquic.brokers import free_port
from mqttquic.certs import CertificateFiles
from mqttquic.cli import main
from mqttquic.cli_clients import CliError, config_from, properties_from
from mqttquic.client import Client
from mqttquic.message import Message

from .conftest import USERS, client_config

# --- as processes, against the gateway ---------------------------------------------------------


class Cli:
    """Runs ``python -m mqttquic`` with the gateway's address and CA, in a scratch HOME."""

    def __init__(self, gateway: Any, certs: CertificateFiles, home: Path) -> None:
        self.connection = ["-h", "127.0.0.1", "-p", str(gateway.quic_port), "--cafile",
                           str(certs.ca_file), "--server-name", "localhost"]
        self.env = {**os.environ, "HOME": str(home)}
        self.env.pop("MQTTQUIC_PASSWORD", None)
        self.home = home

    async def start(self, command: str, *args: str, connection: bool = True,
                    env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mqttquic", command, *(self.connection if connection else []),
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.home, env={**self.env, **(env or {})})

    async def run(self, command: str, *args: str, stdin: bytes = b"", connection: bool = True,
                  env: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes, str]:
        process = await self.start(command, *args, connection=connection, env=env)
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return process.returncode, out, err.decode()


@pytest.fixture
def cli(gateway: Any, certs: CertificateFiles, tmp_path: Path) -> Cli:
    return Cli(gateway, certs, tmp_path)


async def received(client: Client, count: int, timeout: float = 10) -> list[Message]:
    got: list[Message] = []

    async def take() -> None:
        async for message in client.messages():
            got.append(message)
            if len(got) == count:
                return

    await asyncio.wait_for(take(), timeout)
    return got


async def subscribed(cli: Cli, *args: str) -> asyncio.subprocess.Process:
    """A ``sub`` process, once its subscription is in place (it says so with -d)."""
    process = await cli.start("sub", "-d", *args)
    assert process.stderr is not None

    async def wait_suback() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            if b"SUBACK" in line or b"subscribed" in line:
                return
        raise AssertionError("sub ended before subscribing")

    await asyncio.wait_for(wait_suback(), 15)
    return process


async def finish(process: asyncio.subprocess.Process, timeout: float = 15) -> tuple[int, bytes]:
    assert process.stdout is not None
    out = await asyncio.wait_for(process.stdout.read(), timeout)
    code = await asyncio.wait_for(process.wait(), timeout)
    return code, out


async def test_h_is_the_host_and_help_is_help(cli: Cli, gateway: Any, certs: CertificateFiles,
                                              topic_root: str) -> None:
    async with Client(client_config(gateway, certs)) as watcher:
        await watcher.subscribe(f"{topic_root}/#", qos=1)
        code, _, err = await cli.run("pub", "-t", f"{topic_root}/h", "-m", "via -h", "-q", "1")
        assert code == 0, err
        [message] = await received(watcher, 1)
        assert message.payload == b"via -h"
    code, out, _ = await cli.run("pub", "--help", connection=False)
    assert code == 0 and b"mosquitto_pub" in out and b"--will-topic" in out


async def test_pub_without_a_message_is_an_error(cli: Cli) -> None:
    code, _, err = await cli.run("pub", "-t", "a/b")
    assert code == 1
    assert "Error: both topic and message must be supplied" in err
    code, _, err = await cli.run("pub", "-m", "x")
    assert code == 1 and "Error:" in err


async def test_every_message_source(cli: Cli, gateway: Any, certs: CertificateFiles,
                                    topic_root: str, tmp_path: Path) -> None:
    binary = bytes(range(256))
    (tmp_path / "payload.bin").write_bytes(binary)
    topic = f"{topic_root}/src"
    async with Client(client_config(gateway, certs)) as watcher:
        await watcher.subscribe(topic, qos=1)
        for args, stdin in ((["-m", "text"], b""), (["-f", str(tmp_path / "payload.bin")], b""),
                            (["-n"], b""), (["-s"], b"all\nof stdin\xff"),
                            (["-l"], b"line one\nline two\r\n"),
                            (["-m", "again", "--repeat", "2", "--repeat-delay", "0.05"], b"")):
            code, _, err = await cli.run("pub", "-t", topic, "-q", "1", *args, stdin=stdin)
            assert code == 0, (args, err)
        payloads = [m.payload for m in await received(watcher, 8)]
    assert payloads == [b"text", binary, b"", b"all\nof stdin\xff", b"line one", b"line two",
                        b"again", b"again"]


async def test_sub_prints_bytes_as_they_are(cli: Cli, gateway: Any, certs: CertificateFiles,
                                            topic_root: str) -> None:
    sub = await subscribed(cli, "-t", f"{topic_root}/#", "-C", "2", "-q", "1")
    async with Client(client_config(gateway, certs)) as publisher:
        await publisher.publish(f"{topic_root}/bin", b"\xff\xfe\x00raw", qos=1)
        await publisher.publish(f"{topic_root}/txt", "héllo", qos=1)
    code, out = await finish(sub)
    assert code == 0
    assert out == b"\xff\xfe\x00raw\n" + "héllo".encode() + b"\n"


async def test_sub_output_flags(cli: Cli, gateway: Any, certs: CertificateFiles,
                                topic_root: str) -> None:
    verbose = await subscribed(cli, "-t", f"{topic_root}/#", "-v", "-C", "2",
                               "-T", f"{topic_root}/skip/#")
    no_eol = await subscribed(cli, "-t", f"{topic_root}/a", "-N", "-C", "2")
    formatted = await subscribed(cli, "-t", f"{topic_root}/a", "-F", r"%t|%q|%r|%l|%x|%5.2p|@@",
                                 "-q", "1", "-C", "1")
    async with Client(client_config(gateway, certs)) as publisher:
        await publisher.publish(f"{topic_root}/skip/me", b"filtered out", qos=1)
        await publisher.publish(f"{topic_root}/a", b"one", qos=1)
        await publisher.publish(f"{topic_root}/a", b"two", qos=1)
    assert await finish(verbose) == (0, f"{topic_root}/a one\n{topic_root}/a two\n".encode())
    assert await finish(no_eol) == (0, b"onetwo")
    assert await finish(formatted) == (0, f"{topic_root}/a|1|0|3|6f6e65|   on|@\n".encode())


async def test_retained_flags(cli: Cli, topic_root: str) -> None:
    topic = f"{topic_root}/retained"
    assert (await cli.run("pub", "-t", topic, "-m", "kept", "-r", "-q", "1"))[0] == 0
    code, out, _ = await cli.run("sub", "-t", topic, "--retained-only", "-W", "2")
    assert (code, out) == (27, b"kept\n")  # the retained one; no live one came within -W
    code, out, _ = await cli.run("sub", "-t", topic, "-R", "-W", "1")
    assert (code, out) == (27, b"")  # -R: the stale (retained) one is not printed; -W: 27
    code, out, _ = await cli.run("sub", "-t", topic, "--remove-retained", "-C", "1")
    assert (code, out) == (0, b"kept\n")
    code, out, _ = await cli.run("sub", "-t", topic, "-W", "1")
    assert (code, out) == (27, b"")  # cleared
    assert (await cli.run("pub", "-t", topic, "-m", "again", "-r"))[0] == 0
    assert (await cli.run("pub", "-t", topic, "-n", "-r"))[0] == 0  # -n -r clears it too
    assert (await cli.run("sub", "-t", topic, "-W", "1"))[:2] == (27, b"")


async def test_kept_session_with_c_i_and_e(cli: Cli, gateway: Any, certs: CertificateFiles,
                                           topic_root: str) -> None:
    topic = f"{topic_root}/kept"
    code, _, err = await cli.run("sub", "-t", topic, "-q", "1", "-c", "-i", f"{topic_root}-k", "-E")
    assert code == 0, err
    async with Client(client_config(gateway, certs)) as publisher:
        await publisher.publish(topic, b"while away", qos=1)
    code, out, _ = await cli.run("sub", "-t", topic, "-q", "1", "-c", "-i", f"{topic_root}-k",
                                 "-C", "1", "-W", "10")
    assert (code, out) == (0, b"while away\n")
    # -U: unsubscribed from the kept session; the next message stays away.
    code, _, err = await cli.run("sub", "-U", topic, "-c", "-i", f"{topic_root}-k")
    assert code == 0, err
    async with Client(client_config(gateway, certs)) as publisher:
        await publisher.publish(topic, b"not for you", qos=1)
    code, out, _ = await cli.run("sub", "-c", "-i", f"{topic_root}-k", "-t", f"{topic}/other",
                                 "-W", "1")
    assert (code, out) == (27, b"")
    code, _, err = await cli.run("sub", "-t", topic, "-c")
    assert code == 1 and "client id" in err


async def test_password_flags(auth_gateway: Any, certs: CertificateFiles, tmp_path: Path,
                              topic_root: str) -> None:
    cli = Cli(auth_gateway, certs, tmp_path)
    [(user, password)] = USERS.items()
    publish = ["-t", f"{topic_root}/auth", "-m", "x", "-u", user]
    # A refused CONNACK: mosquitto_pub's message, and its code as the exit status.
    code, _, err = await cli.run("pub", *publish, "-P", "wrong")
    assert (code, err.strip()) == (5, "Connection error: Connection Refused: Not authorized (0x05)")
    code, _, err = await cli.run("pub", *publish, "-P", "wrong", "-V", "5")
    assert (code, err.strip()) == (0x87, "Connection error: Connection Refused: Not authorized (0x87)")
    assert (await cli.run("pub", *publish, "-P", password))[0] == 0
    (tmp_path / "pw").write_text(password + "\n")
    assert (await cli.run("pub", *publish, "--pw-file", str(tmp_path / "pw")))[0] == 0
    assert (await cli.run("pub", *publish, env={"MQTTQUIC_PASSWORD": password}))[0] == 0


async def test_mqtt5_properties_url_config_and_tcp(cli: Cli, gateway: Any, certs: CertificateFiles,
                                                   topic_root: str, tmp_path: Path) -> None:
    topic = f"{topic_root}/v5"
    async with Client(client_config(gateway, certs, protocol_version=5)) as watcher:
        await watcher.subscribe(topic, qos=1)
        code, _, err = await cli.run(
            "pub", "-V", "mqttv5", "-t", topic, "-m", "props", "-q", "1",
            "-D", "publish", "user-property", "origin", "cli",
            "-D", "publish", "content-type", "text/plain",
            "-D", "connect", "session-expiry-interval", "30", "-x", "60", "-k", "20")
        assert code == 0, err
        # -L: host, port and topic in one URL, as mosquitto's.
        code, _, err = await cli.run("pub", "-L", f"mqtts://127.0.0.1:{gateway.quic_port}/{topic}",
                                     "--cafile", str(certs.ca_file), "--server-name", "localhost",
                                     "-m", "url", "-q", "1", connection=False)
        assert code == 0, err
        # --config: a ConnectionConfig file; --transport tcp with --tcp-port: the fallback.
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"host": "127.0.0.1", "quic_port": gateway.quic_port,
                                      "ca_file": str(certs.ca_file), "server_name": "localhost"}))
        code, _, err = await cli.run("pub", "--config", str(config), "-t", topic, "-m", "file",
                                     "-q", "1", "--transport", "tcp", "--tcp-port",
                                     str(gateway.tcp_port), "-d", connection=False)
        assert code == 0, err
        # -d: the packet trace on stderr, as mosquitto_pub -d prints it, each line once.
        lines = err.splitlines()
        assert lines[0].startswith("Client ") and lines[0].split()[2:4] == ["sending", "CONNECT"]
        assert sum("received PUBACK" in line for line in lines) == 1
        assert len(lines) == len(set(lines))
        got = await received(watcher, 3)
    assert got[0].payload == b"props"
    assert got[0].properties["user_property"] == [("origin", "cli")]
    assert got[0].properties["content_type"] == "text/plain"
    assert [m.payload for m in got[1:]] == [b"url", b"file"]


async def test_will_flags_reach_the_broker(cli: Cli, gateway: Any, certs: CertificateFiles,
                                           topic_root: str) -> None:
    """A sub with a Will, killed: the broker publishes the Will once the gateway closes."""
    will_topic = f"{topic_root}/will"
    async with Client(client_config(gateway, certs)) as watcher:
        await watcher.subscribe(will_topic, qos=1)
        sub = await subscribed(cli, "-t", f"{topic_root}/nothing", "--will-topic", will_topic,
                               "--will-payload", "gone", "--will-qos", "1", "-k", "2")
        sub.kill()
        await sub.wait()
        [will] = await received(watcher, 1, timeout=20)  # keepalive 2 s: 1.5 x 2 at the broker
    assert (will.payload, will.qos) == (b"gone", 1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_ends_sub_with_disconnect_and_exit_0(
        cli: Cli, gateway: Any, certs: CertificateFiles, topic_root: str, signum: int) -> None:
    """As mosquitto_sub: SIGTERM or Ctrl-C sends DISCONNECT, so the Will is not published,
    and the exit status is 0 (it was -15 or 130, and the Will went out later)."""
    will_topic = f"{topic_root}/will"
    async with Client(client_config(gateway, certs)) as watcher:
        await watcher.subscribe(will_topic, qos=1)
        sub = await subscribed(cli, "-t", f"{topic_root}/nothing", "--will-topic", will_topic,
                               "--will-payload", "gone", "-k", "2")
        sub.send_signal(signum)
        assert await asyncio.wait_for(sub.wait(), 10) == 0
        assert sub.stderr is not None
        assert b"sending DISCONNECT" in await sub.stderr.read()  # -d's trace
        with pytest.raises(TimeoutError):  # 1.5 x keepalive has passed: no Will
            await received(watcher, 1, timeout=4)


async def test_sub_v_prints_topics_without_switching_logging_on(
        cli: Cli, gateway: Any, certs: CertificateFiles, topic_root: str) -> None:
    async with Client(client_config(gateway, certs)) as publisher:
        sub = await cli.start("sub", "-t", f"{topic_root}/#", "-v", "-C", "1", "-q", "1")
        # The subscriber process subscribes within 0.3-0.6 s; a message sent before that
        # would be missed, and the test would time out rather than pass wrongly.
        await asyncio.sleep(1.5)
        await publisher.publish(f"{topic_root}/x", b"hello", qos=1)
        out, err = await asyncio.wait_for(sub.communicate(), 15)
    assert (sub.returncode, out, err) == (0, f"{topic_root}/x hello\n".encode(), b"")


async def test_mosquittos_words_for_a_timeout_a_missing_file_and_no_fallback_noise(
        cli: Cli, gateway: Any, certs: CertificateFiles, topic_root: str, tmp_path: Path) -> None:
    code, out, err = await cli.run("sub", "-t", f"{topic_root}/none", "-W", "1")
    assert (code, out, err) == (27, b"", "Timed out\n")
    code, _, err = await cli.run("pub", "-t", "t", "-f", str(tmp_path / "missing.bin"))
    assert (code, err) == (1, f'Error: cannot load input file "{tmp_path / "missing.bin"}":'
                              " No such file or directory\n")
    # QUIC unanswered (nothing listens on that UDP port): TCP+TLS, and nothing said about it.
    code, _, err = await cli.run("pub", "-h", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
                                 "--tcp-port", str(gateway.tcp_port), "--cafile", str(certs.ca_file),
                                 "--server-name", "localhost", "-t", f"{topic_root}/fb", "-m", "x",
                                 "-q", "1", connection=False)
    assert (code, err) == (0, "")


async def test_the_gateway_command_as_its_users_run_it(mosquitto: Any, tmp_path: Path) -> None:
    gateway = Cli(type("G", (), {"quic_port": 0})(), CertificateFiles(Path(), Path(), Path()),
                  tmp_path)
    code, out, _ = await gateway.run("gateway", "--help", connection=False)
    assert code == 0 and "(default: 127.0.0.1:14567)" in out.decode()
    port = free_port(socket.SOCK_DGRAM)
    args = ["--upstream", f"127.0.0.1:{mosquitto.port}", "--quic", f"127.0.0.1:{port}", "--tcp",
            "off", "--identity-dir", "off", "--reset-key-file", "off"]
    first = await gateway.start("gateway", "-v", *args, connection=False)  # -v after the command
    try:
        assert first.stdout is not None
        assert b"MQTT over QUIC on udp/127.0.0.1" in await asyncio.wait_for(first.stdout.readline(), 15)
        code, _, err = await gateway.run("gateway", *args, connection=False)
        assert code == 1
        assert f"cannot listen on udp/127.0.0.1:{port}: Address already in use" in err
    finally:
        first.terminate()
        await first.wait()
    assert first.stderr is not None
    assert b"INFO" in await first.stderr.read()  # the -v after the command took effect


# --- the flags without sockets -----------------------------------------------------------------


def parse(*argv: str) -> Any:
    import argparse

    from mqttquic.cli_clients import add_pub, add_sub

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    add_pub(commands)
    add_sub(commands)
    return parser.parse_args(argv)


def test_flags_map_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    config = config_from(parse(
        "pub", "-h", "broker.example", "-p", "1234", "--tcp-port", "8885", "--transport", "quic",
        "-u", "me", "--pw-file", str(tmp_path / "pw"), "-I", "pfx-", "-k", "15", "-V", "mqttv5",
        "--cafile", "ca.pem", "--cert", "c.pem", "--key", "k.pem", "--insecure",
        "--tls-version", "tlsv1.3", "--single-stream", "-t", "t", "-m", "m"))
    assert (config.host, config.quic_port, config.tcp_port, config.transport) == (
        "broker.example", 1234, 8885, "quic")
    assert (config.username, config.password, config.keepalive) == ("me", "from-file", 15)
    assert config.client_id == f"pfx-{os.getpid()}"
    assert (config.protocol_version, config.ca_file, config.certfile, config.keyfile) == (
        5, "ca.pem", "c.pem", "k.pem")
    assert config.insecure and config.tls_version == "1.3" and not config.multi_stream
    assert config.session_ticket_file == "~/.cache/mqttquic/session-tickets"
    url = config_from(parse("sub", "-L", "mqtt://u:p%40ss@host.example:99/a%2Fb"))
    assert (url.host, url.quic_port, url.username, url.password) == (
        "host.example", 99, "u", "p@ss")


def test_property_flags() -> None:
    props = properties_from(parse(
        "pub", "-t", "t", "-m", "m", "-D", "publish", "user-property", "a", "1",
        "-D", "publish", "user-property", "b", "2", "-D", "publish", "message-expiry-interval", "9",
        "-D", "publish", "correlation-data", "xyz", "-D", "will", "will-delay-interval", "5"), 5)
    assert props["publish"] == {"user_property": [("a", "1"), ("b", "2")],
                                "message_expiry_interval": 9, "correlation_data": b"xyz"}
    assert props["will"] == {"will_delay_interval": 5}
    for argv, error in ((["-D", "publish", "colour", "red"], "unknown property"),
                        (["-D", "connect", "topic-alias", "3"], "not allowed in connect"),
                        (["-D", "publish", "user-property", "only-key"], "takes 2 value"),
                        (["-D", "publish", "message-expiry-interval", "soon"], "not a number"),
                        (["-D", "auth", "reason-string", "x"], "properties go with")):
        with pytest.raises(CliError, match=error):
            properties_from(parse("pub", "-t", "t", "-m", "m", *argv), 5)
    with pytest.raises(CliError, match="not MQTT 5"):
        properties_from(parse("pub", "-t", "t", "-m", "m", "-D", "publish", "content-type", "x"), 4)


def test_usage_errors_say_error_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pub", "-t", "t", "-m", "m", "-V", "mqttv31"]) == 1
    assert "Error: MQTT 3.1 is not supported" in capsys.readouterr().err
    assert main(["pub", "-t", "t", "--will-payload", "x", "-m", "m"]) == 1
    assert "no will topic" in capsys.readouterr().err
    assert main(["sub", "-t", "t", "-x", "5"]) == 1
    assert "-x needs MQTT 5" in capsys.readouterr().err
    assert main(["pub", "-t", "t", "-m", "m", "-L", "http://x/t"]) == 1
    assert "unsupported URL scheme 'http'" in capsys.readouterr().err
    assert main(["pub", "-t", "t", "--quiet", "-V", "mqttv31", "-m", "m"]) == 1
    assert capsys.readouterr().err == ""


def test_info_says_what_is_installed(capsys: pytest.CaptureFixture[str]) -> None:
    from mqttquic import codec

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("mqttquic", "codec", "aioquic", "paho-mqtt", "python", "platform"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert codec.IMPLEMENTATION in out


async def test_insecure_id_prefix_single_stream_and_tls_version(
        cli: Cli, gateway: Any, certs: CertificateFiles, topic_root: str) -> None:
    topic = f"{topic_root}/misc"
    async with Client(client_config(gateway, certs)) as watcher:
        await watcher.subscribe(topic, qos=1)
        # --insecure: no CA at all, yet connected (QUIC); -I and --single-stream along.
        code, _, err = await cli.run("pub", "-h", "127.0.0.1", "-p", str(gateway.quic_port),
                                     "--insecure", "-I", "cli-", "--single-stream", "-t", topic,
                                     "-m", "insecure", "-q", "1", connection=False)
        assert code == 0, err
        # --tls-version on TCP+TLS; without --insecure an unknown CA is refused.
        code, _, err = await cli.run("pub", "--transport", "tcp", "--tcp-port",
                                     str(gateway.tcp_port), "--tls-version", "tlsv1.3", "-t",
                                     topic, "-m", "tls13", "-q", "1")
        assert code == 0, err
        code, _, err = await cli.run("pub", "-h", "127.0.0.1", "-p", str(gateway.quic_port),
                                     "--server-name", "localhost", "-t", topic, "-m", "no",
                                     connection=False)
        assert code == 1 and "certificate" in err.lower()
        got = await received(watcher, 2)
    assert [m.payload for m in got] == [b"insecure", b"tls13"]
