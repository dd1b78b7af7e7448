"""``python -m mqttquic`` / ``mqttquic``: gateway, pub, sub, demo, bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .cli_clients import CliError, add_pub, add_sub
from .errors import ConnectionRefused

__all__ = ["main"]


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    return host.strip("[]"), int(port)


async def _gateway(args: argparse.Namespace) -> int:
    from .gateway import Gateway, GatewayConfig

    up_host, up_port = _host_port(args.upstream, 1883)
    quic_host, quic_port = "127.0.0.1", None
    if args.quic != "off":
        quic_host, quic_port = _host_port(args.quic, 14567)
    tcp_host, tcp_port = _host_port(args.tcp, 8884) if args.tcp != "off" else ("", None)
    key = None
    if args.reset_key_file != "off":
        from ._resets import load_or_create_key

        key = load_or_create_key(os.path.expanduser(args.reset_key_file))
    config = GatewayConfig(upstream_host=up_host, upstream_port=up_port, quic_host=quic_host,
                           quic_port=quic_port, tcp_host=tcp_host or "127.0.0.1",
                           tcp_port=tcp_port, cert_file=args.cert, key_file=args.key,
                           identity_dir=None if args.identity_dir == "off"
                           else os.path.expanduser(args.identity_dir),
                           max_data_streams=args.max_streams,
                           max_packet_size=args.max_packet_size,
                           connect_timeout=args.connect_timeout,
                           max_connections=args.max_connections,
                           idle_timeout=args.idle_timeout, stateless_reset_key=key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Gateway(config) as gateway:
        if gateway.quic_port:
            print(f"MQTT over QUIC on udp/{quic_host}:{gateway.quic_port} -> {up_host}:{up_port}")
        if gateway.tcp_port:
            print(f"MQTT over TLS on tcp/{tcp_host}:{gateway.tcp_port} -> {up_host}:{up_port}")
        if gateway.ca_file and config.identity_dir is not None:
            print(f"clients trust this gateway with: --cafile {gateway.ca_file}"
                  " (its certificate names localhost, this host and the loopback addresses;"
                  " kept across restarts)")
        elif gateway.ca_file:
            print(f"a throwaway certificate, new at every start; clients trust it with:"
                  f" --cafile {gateway.ca_file} --server-name localhost")
        print("Ctrl-C stops", flush=True)
        await stop.wait()
    return 0


async def _pub(args: argparse.Namespace) -> int:
    from .cli_clients import run_pub

    return await run_pub(args)


async def _sub(args: argparse.Namespace) -> int:
    from .cli_clients import run_sub

    return await run_sub(args)


async def _info(args: argparse.Namespace) -> int:
    from .info import describe

    for name, value in describe():
        print(f"{name:<12} {value}")
    return 0


async def _bench(args: argparse.Namespace) -> int:
    from .selfbench import run_selfbench

    for line in run_selfbench():
        print(line)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(args.broker)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqttquic", description="MQTT over QUIC")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    commands = parser.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="MQTT-over-QUIC listener in front of a broker",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # -v after the command too (mqttquic gateway -v), as before it.
    gateway.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help="more log: -v INFO, -vv DEBUG (aioquic's too)")
    gateway.add_argument("--upstream", default="127.0.0.1:1883", help="TCP broker, host:port")
    gateway.add_argument("--quic", default="127.0.0.1:14567", help="QUIC listen address, or off")
    gateway.add_argument("--tcp", default="127.0.0.1:8884", help="TLS TCP listen address, or off")
    gateway.add_argument("--cert", help="certificate (PEM); none: a generated one, kept in"
                         " --identity-dir")
    gateway.add_argument("--identity-dir", default="~/.local/state/mqttquic",
                         help="where the generated certificate is kept and reused across"
                              " restarts ('off': a throwaway one per start)")
    gateway.add_argument("--key", help="private key (PEM)")
    gateway.add_argument("--max-streams", type=int, default=9, help="data streams per connection")
    gateway.add_argument("--max-packet-size", type=int, default=1024 * 1024,
                         help="largest MQTT packet a client may send, bytes")
    gateway.add_argument("--connect-timeout", type=float, default=10.0,
                         help="seconds a connection has to get its CONNECT accepted")
    gateway.add_argument("--max-connections", type=int, default=1000,
                         help="QUIC connections at once; more are refused")
    gateway.add_argument("--idle-timeout", type=float, default=300.0,
                         help="QUIC idle timeout, seconds")
    gateway.add_argument("--reset-key-file", default="~/.local/state/mqttquic/stateless-reset.key",
                         help="key for stateless resets, kept across restarts (made when"
                              " missing; 'off': a new one per start)")

    add_pub(commands)
    add_sub(commands)
    commands.add_parser("bench", help="time this machine's MQTT codec (both twins)")
    commands.add_parser("info", help="versions: mqttquic, its codec, aioquic, paho-mqtt, Python")

    demo = commands.add_parser("demo", help="run the demo on an embedded broker")
    demo.add_argument("--broker", default="auto", choices=("auto", "amqtt", "mosquitto"))

    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    if args.command in ("demo", "pub", "sub") and not args.verbose:
        # They tell what happens themselves (the demo its story, pub and sub their output
        # and errors, as mosquitto's do: no warning at each fallback); -v shows the logs.
        # The handler's level, not the library loggers': a process that calls main()
        # keeps its loggers as they were.
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.verbose < 2:
        logging.getLogger("quic").setLevel(logging.WARNING)
    handler = {"gateway": _gateway, "pub": _pub, "sub": _sub, "demo": _demo,
               "bench": _bench, "info": _info}[args.command]
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return 130
    except CliError as exc:  # a usage error, worded as mosquitto_pub/sub word theirs
        if not getattr(args, "quiet", False):
            print(f"Error: {exc}", file=sys.stderr)
        return 1
    except ConnectionRefused as exc:  # mosquitto_pub/sub exit with the CONNACK's code
        if not getattr(args, "quiet", False):
            print(f"Connection error: Connection Refused: {exc.reason_name}"
                  f" (0x{exc.reason_code:02X})", file=sys.stderr)
        return exc.reason_code
    except Exception as exc:  # noqa: BLE001 - the CLI reports, the library raises
        if not getattr(args, "quiet", False):
            print(f"mqttquic {args.command}: {exc}", file=sys.stderr)
        return 1
