"""``mqttquic pub`` and ``mqttquic sub``, with mosquitto_pub's and mosquitto_sub's flags.

Users arrive with mosquitto's muscle memory, so the flags mean what they mean there:
``-h`` is the host (``--help`` is help), ``-p`` the port (here the QUIC port), ``-P`` the
password, ``-V 5`` MQTT 5, and a pub with no message is an error. What QUIC adds:
``--transport``, ``--tcp-port`` (the TCP+TLS fallback) and ``--config FILE`` (a
ConnectionConfig file or a platform's credential bundle; flags override it). A
password can come from ``--pw-file`` or ``MQTTQUIC_PASSWORD`` instead of the command
line, where every user of the machine can read it.

Exit codes as mosquitto's: 0 success (SIGINT and SIGTERM included: DISCONNECT is
sent), 1 an error, the CONNACK's reason code when the broker refuses the connection, 27
when ``sub -W`` timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from .config import ConnectionConfig
from .message import Message

__all__ = ["add_pub", "add_sub", "run_pub", "run_sub", "CliError"]

PASSWORD_ENV = "MQTTQUIC_PASSWORD"
TIMED_OUT = 27  # mosquitto_sub -W
DEFAULT_TICKETS = ConnectionConfig.session_ticket_file
CLI_TICKETS = "~/.cache/mqttquic/session-tickets"
VERSIONS = {"mqttv31": 3, "31": 3, "mqttv311": 4, "311": 4, "mqttv5": 5, "5": 5}
# -D's commands, and where each one's properties go.
PROPERTY_COMMANDS = ("connect", "publish", "subscribe", "unsubscribe", "will")


class CliError(Exception):
    """A usage error, printed as ``Error: ...`` (mosquitto's wording) with exit code 1."""


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--help", action="help", help="show this help and exit")
    add("-h", "--host", help="server host (default localhost)")
    add("-p", "--port", "--quic-port", dest="port", type=int,
        help="server's QUIC port (UDP, default 14567)")
    add("--tcp-port", type=int, help="server's TCP+TLS port for the fallback (default 8884)")
    add("--transport", choices=("auto", "quic", "tcp"),
        help="auto (default): QUIC first, TCP+TLS when it is blocked; or only one")
    add("--config", metavar="FILE", help="a ConnectionConfig JSON file or a platform bundle;"
        " flags given here override it")
    add("-L", "--url", help="mqtt(s)://[user[:password]@]host[:port]/topic")
    add("-u", "--username")
    add("-P", "--pw", "--password", dest="password",
        help=f"password (visible to other users in the process list: prefer --pw-file or"
             f" ${PASSWORD_ENV})")
    add("--pw-file", metavar="FILE", help="read the password from the file's first line")
    add("-i", "--id", "--client-id", dest="client_id",
        help="client id (default: random; MQTT 5: the one the broker assigns)")
    add("-I", "--id-prefix", help="client id: this prefix and the process id")
    add("-k", "--keepalive", type=int, help="keepalive, seconds (default 60)")
    add("-c", "--disable-clean-session", action="store_true",
        help="keep the session (needs -i); with MQTT 5 it never expires unless -x says")
    add("-x", "--session-expiry", type=int, metavar="SECONDS",
        help="MQTT 5 session expiry interval")
    add("-V", "--protocol-version", choices=sorted(VERSIONS), help="mqttv311 (default) or mqttv5")
    add("--mqtt5", dest="protocol_version", action="store_const", const="5",
        help="same as -V mqttv5")
    add("--cafile", "--ca-file", dest="cafile", help="CA certificates (PEM) to verify the server;"
        " default: the system's trust store")
    add("--cert", help="client certificate (PEM) for mutual TLS")
    add("--key", help="client private key (PEM)")
    add("--insecure", action="store_true", help="do not verify the server's certificate")
    add("--server-name", help="name to verify in the certificate (default: the host)")
    add("--tls-version", choices=("tlsv1.2", "tlsv1.3"), help="minimum TLS version on TCP")
    add("--tls-use-os-certs", action="store_true",
        help="accepted for mosquitto's sake: the system's trust store is the default")
    add("--will-topic")
    add("--will-payload")
    add("--will-qos", type=int, choices=(0, 1, 2), default=0)
    add("--will-retain", action="store_true")
    add("-D", "--property", nargs="+", action="append", default=[],
        metavar="COMMAND IDENTIFIER VALUE",
        help="an MQTT 5 property, e.g. -D publish user-property key value (repeatable)")
    add("-q", "--qos", type=int, choices=(0, 1, 2), default=0)
    add("--single-stream", action="store_true", help="QUIC: everything on the control stream")
    add("-d", "--debug", action="store_true",
        help="trace every packet sent and received, on stderr (as mosquitto's -d)")
    add("--quiet", action="store_true", help="print no error messages")


def add_pub(commands: Any) -> None:
    pub = commands.add_parser("pub", add_help=False, help="publish (mosquitto_pub's flags)",
                              description="Publish, as mosquitto_pub does, over QUIC.")
    _common(pub)
    pub.add_argument("-t", "--topic")
    source = pub.add_mutually_exclusive_group()
    source.add_argument("-m", "--message", help="the payload")
    source.add_argument("-f", "--file", help="the file's content is the payload")
    source.add_argument("-l", "--stdin-line", action="store_true",
                        help="each line of stdin is a message")
    source.add_argument("-n", "--null-message", action="store_true", help="a zero-length payload")
    source.add_argument("-s", "--stdin-file", action="store_true", help="all of stdin is the payload")
    pub.add_argument("-r", "--retain", action="store_true")
    pub.add_argument("--repeat", type=int, default=1, help="publish this many times")
    pub.add_argument("--repeat-delay", type=float, default=0.0, metavar="SECONDS")


def add_sub(commands: Any) -> None:
    sub = commands.add_parser("sub", add_help=False, help="print messages (mosquitto_sub's flags)",
                              description="Subscribe and print, as mosquitto_sub does, over QUIC.")
    _common(sub)
    sub.add_argument("-t", "--topic", action="append", default=[])
    sub.add_argument("-T", "--filter-out", action="append", default=[],
                     help="do not print messages whose topic matches this filter")
    sub.add_argument("-U", "--unsubscribe", action="append", default=[],
                     help="unsubscribe from this filter (with -c: of the kept session)")
    sub.add_argument("-C", "--count", type=int, default=0, help="exit after this many messages")
    sub.add_argument("-W", "--timeout", type=float, default=0.0, metavar="SECONDS",
                     help="exit after this long (exit code 27)")
    sub.add_argument("-R", "--no-stale", action="store_true",
                     help="do not print retained messages (stale ones)")
    sub.add_argument("--retained-only", action="store_true",
                     help="print only retained messages; exit at the first live one")
    sub.add_argument("--remove-retained", action="store_true",
                     help="clear each retained message received")
    sub.add_argument("-E", "--exit-after-subscribe", action="store_true",
                     help="exit once subscribed (to set up a kept session)")
    sub.add_argument("-N", "--no-eol", action="store_true", help="no end of line after a message")
    # Not "verbose": that is the global -v (log level), which mosquitto_sub has not.
    sub.add_argument("-v", "--verbose", dest="print_topic", action="store_true",
                     help="print the topic too")
    sub.add_argument("-F", "--format", help="output format, as mosquitto_sub's -F")


# --- turning flags into a configuration ------------------------------------------------------


def _password(args: argparse.Namespace) -> str | None:
    if args.password is not None:
        return str(args.password)
    if args.pw_file:
        with open(args.pw_file, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV) or None


def _apply_url(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    if url.scheme not in ("mqtt", "mqtts"):
        raise CliError(f"unsupported URL scheme {url.scheme!r} in -L (mqtt:// or mqtts://)")
    topic = unquote(url.path[1:])
    if not url.hostname or not topic:
        raise CliError("-L needs a host and a topic: mqtt(s)://[user[:password]@]host[:port]/topic")
    args.host = args.host or url.hostname
    args.port = args.port or url.port
    args.username = args.username or (unquote(url.username) if url.username else None)
    if args.password is None and url.password:
        args.password = unquote(url.password)
    if isinstance(args.topic, list):
        args.topic = args.topic or [topic]
    else:
        args.topic = args.topic or topic


def config_from(args: argparse.Namespace) -> ConnectionConfig:
    """The ConnectionConfig the flags (over ``--config``'s file) describe."""
    if args.url:
        _apply_url(args)
    base = ConnectionConfig.from_file(args.config) if args.config else ConnectionConfig()
    version = VERSIONS[args.protocol_version] if args.protocol_version else None
    if version == 3:
        raise CliError("MQTT 3.1 is not supported: use -V mqttv311 or mqttv5")
    client_id = args.client_id or (f"{args.id_prefix}{os.getpid()}" if args.id_prefix else None)
    if args.disable_clean_session and not (client_id or base.client_id or base.device_id):
        raise CliError("you must provide a client id (-i) if you are using -c")
    overrides: dict[str, Any] = {
        "host": args.host, "quic_port": args.port, "tcp_port": args.tcp_port,
        "transport": args.transport, "client_id": client_id, "username": args.username,
        "password": _password(args), "keepalive": args.keepalive, "protocol_version": version,
        "ca_file": args.cafile, "certfile": args.cert, "keyfile": args.key,
        "server_name": args.server_name,
        "tls_version": args.tls_version[len("tlsv"):] if args.tls_version else None,
    }
    settings = {key: value for key, value in overrides.items() if value is not None}
    if base.session_ticket_file == DEFAULT_TICKETS:
        # Not the library's default (a file in the current folder): a command is run from
        # anywhere, and its 0-RTT tickets should not litter every folder it is run in.
        settings["session_ticket_file"] = CLI_TICKETS
    if args.insecure:
        settings["insecure"] = True
    if args.disable_clean_session:
        settings["clean_start"] = False
    if args.single_stream:
        settings["multi_stream"] = False
    try:
        return dataclasses.replace(base, **settings)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def properties_from(args: argparse.Namespace, protocol_version: int) -> dict[str, dict[str, Any]]:
    """``-D command identifier value`` flags, as property dicts per command."""
    from .enums import PacketType
    from .properties import PROPERTY_IDS, WILL

    contexts = {"connect": PacketType.CONNECT, "publish": PacketType.PUBLISH,
                "subscribe": PacketType.SUBSCRIBE, "unsubscribe": PacketType.UNSUBSCRIBE,
                "will": WILL}
    result: dict[str, dict[str, Any]] = {command: {} for command in PROPERTY_COMMANDS}
    if args.property and protocol_version != 5:
        raise CliError("-D argument given, but the protocol version is not MQTT 5 (-V mqttv5)")
    for words in args.property:
        if len(words) < 3:
            raise CliError("-D needs a command, an identifier and a value")
        command, identifier, *values = words
        if command not in contexts:
            raise CliError(f"-D {command}: properties go with {', '.join(PROPERTY_COMMANDS)}")
        spec = PROPERTY_IDS.get(identifier.replace("-", "_"))
        if spec is None:
            raise CliError(f"-D: unknown property {identifier!r}")
        if contexts[command] not in spec.allowed_in:
            raise CliError(f"-D: {identifier} is not allowed in {command}")
        wanted = 2 if spec.wire_type == "string_pair" else 1
        if len(values) != wanted:
            raise CliError(f"-D {command} {identifier} takes {wanted} value(s)")
        props = result[command]
        if spec.wire_type == "string_pair":
            props.setdefault(spec.name, []).append((values[0], values[1]))
            continue
        value: Any = values[0]
        if spec.wire_type in ("byte", "u16", "u32", "varint"):
            try:
                value = int(value)
            except ValueError:
                raise CliError(f"-D {command} {identifier}: {value!r} is not a number") from None
        elif spec.wire_type == "binary":
            value = value.encode()
        if spec.multiple:
            props.setdefault(spec.name, []).append(value)
        else:
            props[spec.name] = value
    return result


def client_from(args: argparse.Namespace) -> Any:
    """A Client for the flags: the config, the Will and the CONNECT properties."""
    from .client import Client
    from .codec import Will

    config = config_from(args)
    props = properties_from(args, config.protocol_version)
    connect_props = props["connect"]
    if args.session_expiry is not None:
        if config.protocol_version != 5:
            raise CliError("-x needs MQTT 5 (-V mqttv5)")
        connect_props["session_expiry_interval"] = args.session_expiry
    elif args.disable_clean_session and config.protocol_version == 5:
        connect_props["session_expiry_interval"] = 0xFFFFFFFF  # -c: kept for ever, as mosquitto
    will = None
    if args.will_payload is not None and not args.will_topic:
        raise CliError("will payload given, but no will topic (--will-topic)")
    if args.will_topic:
        will = Will(args.will_topic, (args.will_payload or "").encode(), args.will_qos,
                    args.will_retain, props["will"] or None)
    return Client(config, will=will, connect_properties=connect_props or None), props


def setup_logging(args: argparse.Namespace) -> None:
    """``-d``: the packet trace on stderr, each line once (the library's own log stays
    with the global ``-v``)."""
    if args.debug:
        from . import _trace

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _trace.logger.addHandler(handler)
        _trace.logger.setLevel(logging.DEBUG)
        _trace.logger.propagate = False


async def until_signalled(work: Callable[[], Awaitable[int]]) -> int:
    """``work()``'s exit code, or 0 when SIGINT or SIGTERM ends it first: ``work`` is
    cancelled inside its ``async with client``, which then sends DISCONNECT (no Will),
    as mosquitto_pub/sub do."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work())
    signalled: list[int] = []

    def stop(signum: int) -> None:
        signalled.append(signum)
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass
    try:
        return await task
    except asyncio.CancelledError:
        if signalled:
            return 0
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


# --- pub ---------------------------------------------------------------------------------------


def _payloads(args: argparse.Namespace) -> list[bytes] | None:
    """The messages to publish; None for -l (read line by line while connected)."""
    if args.message is not None:
        return [args.message.encode()]
    if args.file:
        try:
            with open(args.file, "rb") as handle:
                return [handle.read()]
        except OSError as exc:
            raise CliError(f'cannot load input file "{args.file}": {exc.strerror}') from None
    if args.null_message:
        return [b""]
    if args.stdin_file:
        return [sys.stdin.buffer.read()]
    if args.stdin_line:
        return None
    raise CliError("both topic and message must be supplied (-m, -f, -l, -n or -s)")


async def run_pub(args: argparse.Namespace) -> int:
    setup_logging(args)
    client, props = client_from(args)  # -L's topic included
    if not args.topic:
        raise CliError("both topic and message must be supplied (-t)")
    if args.repeat < 1:
        raise CliError("--repeat must be at least 1")
    payloads = _payloads(args)
    return await until_signalled(lambda: _pub(args, client, payloads, props["publish"] or None))


async def _stdin_lines() -> AsyncIterator[bytes]:
    """stdin's lines as they come (-l). Read on the loop where stdin is a pipe or a
    terminal, so that SIGTERM ends a pub waiting for a line at once; a regular file
    (which the loop cannot watch) is read in a worker thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except (ValueError, OSError):
        while line := await loop.run_in_executor(None, sys.stdin.buffer.readline):
            yield line
        return
    while line := await reader.readline():
        yield line


async def _pub(args: argparse.Namespace, client: Any, payloads: list[bytes] | None,
               publish_props: dict[str, Any] | None) -> int:
    async with client:
        if payloads is None:
            async for line in _stdin_lines():
                await client.publish(args.topic, line.rstrip(b"\r\n"), qos=args.qos,
                                     retain=args.retain, properties=publish_props)
            return 0
        for round_ in range(args.repeat):
            if round_ and args.repeat_delay:
                await asyncio.sleep(args.repeat_delay)
            for payload in payloads:
                await client.publish(args.topic, payload, qos=args.qos, retain=args.retain,
                                     properties=publish_props)
    return 0


# --- sub ---------------------------------------------------------------------------------------


def _render(args: argparse.Namespace, message: Message) -> bytes:
    from ._sub_format import format_message

    eol = b"" if args.no_eol else b"\n"
    if args.format:
        return format_message(args.format, message) + eol
    if args.print_topic:
        if message.payload:
            return message.topic.encode() + b" " + message.payload + eol
        return message.topic.encode() + b" (null)\n" if eol else b""
    return message.payload + eol if message.payload else b""


async def run_sub(args: argparse.Namespace) -> int:
    setup_logging(args)
    client, props = client_from(args)  # -L's topic included
    if not args.topic and not args.unsubscribe:
        raise CliError("you must specify a topic to subscribe to (-t) or unsubscribe from (-U)")
    return await until_signalled(lambda: _sub(args, client, props))


async def _sub(args: argparse.Namespace, client: Any, props: dict[str, dict[str, Any]]) -> int:
    from .topics import topic_matches

    out = sys.stdout.buffer
    async with client:
        if args.unsubscribe:
            await client.unsubscribe(args.unsubscribe, properties=props["unsubscribe"] or None)
        if args.topic:
            await client.subscribe([(topic, args.qos) for topic in args.topic],
                                   properties=props["subscribe"] or None)
        if args.exit_after_subscribe or not args.topic:
            return 0

        async def print_messages() -> None:
            count = 0
            async for message in client.messages():
                if args.retained_only and not message.retain:
                    return
                if any(topic_matches(f, message.topic) for f in args.filter_out):
                    continue
                if args.remove_retained and message.retain and message.payload:
                    await client.publish(message.topic, b"", qos=0, retain=True)
                if args.no_stale and message.retain:
                    continue
                out.write(_render(args, message))
                out.flush()
                count += 1
                if args.count and count >= args.count:
                    return

        if not args.timeout:
            await print_messages()
            return 0
        try:
            await asyncio.wait_for(print_messages(), args.timeout)
        except TimeoutError:
            if not args.quiet:
                print("Timed out", file=sys.stderr)
            return TIMED_OUT
    return 0
