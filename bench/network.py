"""mqttquic against paho-mqtt over an emulated network: delay and random loss, both measured
in one run, interleaved round by round.

    sudo .venv/bin/python bench/network.py                      # 50 ms RTT; 0%, 1%, 5% loss
    sudo .venv/bin/python bench/network.py --loss 0,5 --rounds 20

Two network namespaces are joined by a userland link (``tun_link.py``): packets, so TCP
sees the same loss as QUIC. The server namespace runs mosquitto (plain TCP, and its own
TLS listener) and our gateway (QUIC, and its TLS listener). The client namespace runs:

- ours: ``mqttquic.Client`` over QUIC through the gateway;
- paho: paho-mqtt over TCP+TLS straight to mosquitto, and through the gateway's TLS listener.

Scenarios (``--only``): connect (full, 0-RTT, to the first PUBACK, with and without
early publish), first-puback (that one alone, for its tail), publish (3 parallel
QoS 1 publishes, throughput with 100 in flight and how long each publish of it took),
migration (a QoS 1 publish across a move to a new port or a new address; paho
reconnects), recovery (a dead path, and the move back when UDP returns).

Writes ``results/network.md`` (p50/p90/p99 per metric and loss rate) and PNG charts of the
latency distributions, ours against paho, per loss rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GATEWAY_QUIC, GATEWAY_TLS, BROKER, BROKER_TLS = 14567, 8884, 1883, 8883
# The baseline: paho-mqtt over TCP+TLS straight to mosquitto, and through our gateway.
PAHO_PEERS = (("paho", BROKER_TLS), ("paho via gateway", GATEWAY_TLS))

# --- the client side (runs inside the client namespace) ----------------------------------------


def _ours(settings: dict[str, Any], **overrides: Any) -> Any:
    from mqttquic import Client, ConnectionConfig

    values = dict(settings)
    values.update(overrides)
    return Client(ConnectionConfig(**values))


def _paho(port: int, ca_file: str, host: str) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-{uuid.uuid4().hex[:8]}")
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False  # the certificate names localhost; verified all the same
    client.tls_set_context(context)
    client.max_inflight_messages_set(100)
    client.connect_timeout = 10
    return client


class PahoRun:
    """paho-mqtt with its network thread, timed from the caller's thread."""

    def __init__(self, port: int, ca_file: str, host: str) -> None:
        self.client = _paho(port, ca_file, host)
        self.port, self.host = port, host
        self.connected = threading.Event()
        self.acked: dict[int, threading.Event] = {}
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_publish = self._on_publish

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        self.acked.setdefault(mid, threading.Event()).set()

    def connect(self) -> float:
        started = time.perf_counter()
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        if not self.connected.wait(15):
            raise TimeoutError("paho: no CONNACK in 15 s")
        return time.perf_counter() - started

    def publish_all(self, topics: list[str], qos: int = 1) -> None:
        infos = [self.client.publish(topic, b"x" * 32, qos) for topic in topics]
        for info in infos:
            info.wait_for_publish(15)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _windowed(client: Any, window: asyncio.Semaphore, i: int) -> float:
    """One publish of the throughput run; how long it held its place in the window."""
    async with window:
        started = time.perf_counter()
        await client.publish(f"bench/tp/{i % 4}", b"x" * 32, qos=1)
        return time.perf_counter() - started


async def _traffic(client: Any, stop: asyncio.Event) -> None:
    """A QoS 1 publish every 50 ms until ``stop``."""
    while not stop.is_set():
        await client.publish("bench/dead", b"x", qos=1)
        await asyncio.sleep(0.05)


async def _in_thread(function: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def client_role(args: argparse.Namespace) -> None:
    """Measure every scenario; print one JSON object per sample."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(relativeCreated)8.0f ms %(name)s %(message)s")
    host, ca_file = args.server, args.ca_file
    tickets = tempfile.mkdtemp(prefix="mqttquic-bench-")
    settings = dict(host=host, quic_port=GATEWAY_QUIC, tcp_port=GATEWAY_TLS,
                    server_name="localhost", ca_file=ca_file, connect_timeout=10,
                    session_ticket_file=os.path.join(tickets, "tickets"))

    def emit(metric: str, peer: str, value: float, unit: str = "ms") -> None:
        print(json.dumps({"metric": metric, "peer": peer, "value": value, "unit": unit}),
              flush=True)

    async def ours_connect(zero_rtt: bool) -> float:
        """Connect as a device does (QUIC first, TCP+TLS raced after the head start)."""
        client = _ours(settings, zero_rtt=zero_rtt)
        started = time.perf_counter()
        await client.connect()
        elapsed = time.perf_counter() - started
        kind = "connect 0-RTT" if zero_rtt else "connect full"
        emit(f"{kind}: ended on TCP+TLS", "ours",
             100.0 * (client.get_stats()["transport"] == "tcp_tls"), "%")
        await client.disconnect()
        return elapsed

    async def ours_first_puback(early_publish: bool = False) -> float:
        """Connect start to the first QoS 1 PUBACK; with ``early_publish`` the PUBLISH
        rides in the 0-RTT flight with CONNECT (a ticket is stored by then)."""
        client = _ours(settings, transport="quic", early_publish=early_publish)
        started = time.perf_counter()
        await client.connect()
        await client.publish("bench/first", b"x", qos=1)
        elapsed = time.perf_counter() - started
        await client.disconnect()
        return elapsed

    def paho_first_puback(port: int) -> float:
        run = PahoRun(port, ca_file, host)
        started = time.perf_counter()
        run.connect()
        run.publish_all(["bench/first"])
        elapsed = time.perf_counter() - started
        run.close()
        return elapsed

    def paho_connect(port: int) -> float:
        run = PahoRun(port, ca_file, host)
        elapsed = run.connect()
        run.close()
        return elapsed

    await ours_connect(True)  # a ticket for the 0-RTT rounds
    # Interleaved, round by round: ours and paho see the same state of the link.
    for _ in range(args.rounds if "connect" in args.only else 0):
        emit("connect full", "ours", 1000 * await ours_connect(False))
        emit("connect 0-RTT", "ours", 1000 * await ours_connect(True))
        for peer, port in PAHO_PEERS:
            emit("connect full", peer, 1000 * await _in_thread(paho_connect, port))
        emit("connect to first PUBACK", "ours", 1000 * await ours_first_puback())
        emit("connect to first PUBACK", "ours, early publish",
             1000 * await ours_first_puback(early_publish=True))
        for peer, port in PAHO_PEERS:
            emit("connect to first PUBACK", peer, 1000 * await _in_thread(paho_first_puback, port))

    # The first PUBACK after a resume alone, for its tail (p99 needs ~150 rounds).
    for _ in range(args.rounds if "first-puback" in args.only else 0):
        emit("connect to first PUBACK", "ours", 1000 * await ours_first_puback())
        emit("connect to first PUBACK", "ours, early publish",
             1000 * await ours_first_puback(early_publish=True))
        emit("connect to first PUBACK", "paho via gateway",
             1000 * await _in_thread(paho_first_puback, GATEWAY_TLS))

    topics = [f"bench/parallel/{name}" for name in ("temp", "humid", "press")]
    rounds = args.rounds if "publish" in args.only else 0
    ours = _ours(settings, transport="quic")
    await ours.connect()
    paho_runs = [(peer, PahoRun(port, ca_file, host)) for peer, port in PAHO_PEERS]
    for _, run in paho_runs:
        await _in_thread(run.connect)
    for _ in range(rounds):
        started = time.perf_counter()
        results = await ours.publish_parallel([{"topic": t, "payload": b"x" * 32, "qos": 1}
                                               for t in topics])
        assert all(results.values())
        emit("3 parallel QoS 1 publishes", "ours", 1000 * (time.perf_counter() - started))
        for peer, run in paho_runs:
            started = time.perf_counter()
            await _in_thread(run.publish_all, topics)
            emit("3 parallel QoS 1 publishes", peer, 1000 * (time.perf_counter() - started))

    count = args.messages
    for _ in range(2 if "publish" in args.only else 0):
        started = time.perf_counter()
        window = asyncio.Semaphore(100)
        held = await asyncio.gather(*(_windowed(ours, window, i) for i in range(count)))
        emit("QoS 1 throughput, 100 in flight", "ours",
             count / (time.perf_counter() - started), "msg/s")
        # Where the throughput goes: with a window of 100, msg/s = 100 / mean time held,
        # and a lost packet holds up what follows it on its stream (paho: the connection).
        for seconds in held:
            emit("QoS 1 publish to PUBACK, 100 in flight", "ours", 1000 * seconds)
        for peer, run in paho_runs:
            started = time.perf_counter()
            await _in_thread(run.publish_all, [f"bench/tp/{i % 4}" for i in range(count)])
            emit("QoS 1 throughput, 100 in flight", peer,
                 count / (time.perf_counter() - started), "msg/s")
    for _, run in paho_runs:
        await _in_thread(run.close)
    await ours.disconnect()

    # A move mid-session: ours keeps its QUIC connection (Client.migrate(): a new port, as
    # a NAT rebinding looks to the server, or a new address); paho's TCP connection cannot
    # move and must connect again. Measured: a QoS 1 publish made at the moment of the move.
    if "migration" in args.only:
        client = _ours(settings, transport="quic")
        await client.connect()
        await client.publish("bench/move", b"warm", qos=1)
        addresses = [args.client_ip2, args.client_ip]
        for i in range(args.rounds):
            for metric, local in (("QoS 1 publish across a move: new port", None),
                                  ("QoS 1 publish across a move: new address",
                                   addresses[i % 2])):
                started = time.perf_counter()
                moving = asyncio.ensure_future(client.migrate(local))
                await client.publish("bench/move", b"x", qos=1)
                emit(metric, "ours", 1000 * (time.perf_counter() - started))
                await moving
            emit("QoS 1 publish across a move: new port", "paho (reconnects)",
                 1000 * await _in_thread(paho_first_puback, BROKER_TLS))
        stats = client.get_stats()
        assert stats["reconnect_count"] == 0 and stats["migrations"] == 2 * args.rounds, stats
        await client.disconnect()

    # Dead path and move back: the orchestrator blocks and unblocks the client's UDP.
    from mqttquic import TransportType

    for _ in range(args.recovery_rounds if "recovery" in args.only else 0):
        client = _ours(settings, keepalive=60, reconnect_min_delay=0.05)
        await client.connect()
        stop = asyncio.Event()

        flowing = asyncio.ensure_future(_traffic(client, stop))
        await asyncio.sleep(0.5)
        print("BLOCK", flush=True)
        sys.stdin.readline()
        blocked = time.perf_counter()
        # Recovered: a publish made after the path died is acknowledged.
        await asyncio.sleep(0)
        while client.transport_type is not TransportType.TCP_TLS or not client.is_connected:
            await asyncio.sleep(0.01)
        await client.publish("bench/dead", b"after", qos=1)
        emit("dead path to a publish acknowledged", "ours", 1000 * (time.perf_counter() - blocked))
        print("UNBLOCK", flush=True)
        sys.stdin.readline()
        unblocked = time.perf_counter()
        while client.transport_type is not TransportType.QUIC:
            await asyncio.sleep(0.01)
        emit("UDP back to QUIC again", "ours", 1000 * (time.perf_counter() - unblocked))
        stop.set()
        await flowing
        await client.disconnect()


# --- the orchestrator (root namespace) --------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _serve(link: Any, certs: Any, folder: Path) -> list[subprocess.Popen[bytes]]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {BROKER} {link.server_ip}\nallow_anonymous true\n"
                    f"listener {BROKER_TLS} {link.server_ip}\nallow_anonymous true\n"
                    f"certfile {certs.cert_file}\nkeyfile {certs.key_file}\nuser root\n"
                    "max_inflight_messages 0\n")
    broker = subprocess.Popen(link.exec_args(link.server_ns, [mosquitto, "-c", str(conf)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = subprocess.Popen(link.exec_args(link.server_ns, [
        sys.executable, "-m", "mqttquic", "gateway", "--upstream", f"{link.server_ip}:{BROKER}",
        "--quic", f"{link.server_ip}:{GATEWAY_QUIC}", "--tcp", f"{link.server_ip}:{GATEWAY_TLS}",
        "--cert", str(certs.cert_file), "--key", str(certs.key_file), "--reset-key-file",
        str(folder / "reset.key")]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(2.0)
    return [broker, gateway]


async def _measure(link: Any, args: argparse.Namespace, ca_file: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        *link.exec_args(link.client_ns, [
            sys.executable, str(Path(__file__).resolve()), "--role", "client", "--server",
            link.server_ip, "--client-ip", link.client_ip, "--client-ip2", link.client_ip2,
            "--ca-file", ca_file, "--rounds", str(args.rounds),
            "--recovery-rounds", str(args.recovery_rounds), "--messages", str(args.messages),
            "--only", args.only, *(["--verbose"] if args.verbose else [])]),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    samples = []
    while line := await asyncio.wait_for(process.stdout.readline(), 300):
        text = line.decode().strip()
        if text in ("BLOCK", "UNBLOCK"):
            link.block_udp_up = text == "BLOCK"
            process.stdin.write(b"ok\n")
            await process.stdin.drain()
        elif text.startswith("{"):
            samples.append(json.loads(text))
    await process.wait()
    if process.returncode:
        raise RuntimeError(f"the client side failed ({process.returncode})")
    return samples


def _table(results: dict[float, list[dict[str, Any]]], delay_ms: float) -> str:
    lines = [f"Userland link, {delay_ms:g} ms each way ({2 * delay_ms:g} ms RTT), random loss"
             " both ways. Times in ms (p50 / p90 / p99); throughput in msg/s (mean).", "",
             "| metric | peer | " + " | ".join(f"{loss:g}% loss" for loss in results) + " |",
             "|---|---|" + "---|" * len(results)]
    keys: list[tuple[str, str]] = []
    for samples in results.values():
        for sample in samples:
            key = (sample["metric"], sample["peer"])
            if key not in keys:
                keys.append(key)
    for metric, peer in keys:
        cells = []
        for samples in results.values():
            values = [s["value"] for s in samples if (s["metric"], s["peer"]) == (metric, peer)]
            unit = next((s["unit"] for s in samples if s["metric"] == metric), "ms")
            if not values:
                cells.append("-")
            elif unit == "ms":
                cells.append(" / ".join(f"{_percentile(values, q):.0f}" for q in (50, 90, 99)))
            elif unit == "%":
                cells.append(f"{statistics.mean(values):.0f}% of {len(values)}")
            else:
                cells.append(f"{statistics.mean(values):,.0f}")
        lines.append(f"| {metric} | {peer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _charts(results: dict[float, list[dict[str, Any]]]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no charts")
        return []
    written = []
    metrics = ["connect full", "connect 0-RTT", "connect to first PUBACK",
               "3 parallel QoS 1 publishes"]
    for loss, samples in results.items():
        figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4))
        for axis, metric in zip(axes, metrics):
            peers = sorted({s["peer"] for s in samples if s["metric"] == metric})
            data = [[s["value"] for s in samples if s["metric"] == metric and s["peer"] == peer]
                    for peer in peers]
            if data:
                axis.boxplot(data, whis=(1, 99))
                axis.set_xticks(range(1, len(peers) + 1), peers, rotation=15, fontsize=8)
            axis.set_title(metric, fontsize=9)
            axis.set_ylabel("ms")
        figure.suptitle(f"mqttquic vs paho-mqtt, {loss:g}% loss (whiskers: p1-p99)")
        figure.tight_layout()
        path = RESULTS / f"network-loss-{loss:g}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
    return written


async def orchestrate(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(HERE))
    from tun_link import TunLink, available

    why = available()
    if why is not None:
        print(f"bench/network.py skipped: {why}")
        return 0
    from mqttquic.certs import generate_certificates

    folder = Path(tempfile.mkdtemp(prefix="mqttquic-network-"))
    os.chmod(folder, 0o755)
    certs = generate_certificates(folder / "certs")
    link = TunLink(delay=args.delay_ms / 1000)
    link.up()
    link.start()
    servers: list[subprocess.Popen[bytes]] = []
    results: dict[float, list[dict[str, Any]]] = {}
    try:
        servers = await _serve(link, certs, folder)
        for loss in [float(x) for x in args.loss.split(",")]:
            link.loss = loss / 100
            print(f"loss {loss:g}%: measuring ...", flush=True)
            results[loss] = await _measure(link, args, str(certs.ca_file))
    finally:
        for server in servers:
            server.terminate()
            server.wait(5)
        link.down()
    RESULTS.mkdir(exist_ok=True)
    table = _table(results, args.delay_ms)
    (RESULTS / "network.md").write_text(table)
    print(table)
    for path in _charts(results):
        print(f"chart: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="orchestrator", choices=("orchestrator", "client"))
    parser.add_argument("--loss", default="0,1,5", help="loss rates in percent, comma separated")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--recovery-rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--server", default="10.77.0.2")
    parser.add_argument("--client-ip", default="10.77.0.1")
    parser.add_argument("--client-ip2", default="10.77.0.3")
    parser.add_argument("--ca-file", default="")
    parser.add_argument("--only", default="connect,publish,recovery,migration",
                        help="scenarios: connect, publish, recovery, migration (comma separated)")
    parser.add_argument("--verbose", action="store_true", help="the client's log on stderr")
    args = parser.parse_args()
    if args.role == "client":
        asyncio.run(client_role(args))
        return 0
    return asyncio.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
