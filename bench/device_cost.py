"""What a small device pays: mqttquic against paho-mqtt over TCP+TLS, in one run.

    python bench/device_cost.py [--idle 20] [--publishes 500] [--rounds 3]

Each client runs in a process of its own and measures itself: CPU is the process's
user+sys time (``time.process_time``, paho's network thread included), RSS is VmRSS once
connected. Both clients talk to the same mosquitto through the same gateway on
loopback: mqttquic over QUIC, paho over the gateway's TLS listener (paho's usual
``loop_start()`` thread). Rows:

- CPU while idle and connected, in ms per minute (keepalive 60 s);
- RSS once connected;
- CPU per sequential QoS 1 publish, and its round trip (p50);
- CPU per QoS 1 publish with 100 in flight;
- CPU per QoS 0 publish.

Each figure is the median of ``--rounds`` runs; ratios are ours / paho, with the goal of
issue 20 beside them. Writes ``results/device_cost.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
PAYLOAD = b"x" * 32
WINDOW = 100


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_ms() -> float:
    return time.process_time() * 1000


# --- the client processes -------------------------------------------------------------------

async def _ours(args: argparse.Namespace) -> dict[str, float]:
    from mqttquic import Client, ConnectionConfig

    config = ConnectionConfig(host="127.0.0.1", quic_port=args.quic_port, ca_file=args.ca,
                              server_name="localhost", transport="quic", keepalive=60,
                              device_id=f"dev-{uuid.uuid4().hex[:6]}")
    out: dict[str, float] = {}
    topic = f"bench/{uuid.uuid4().hex[:6]}"
    async with Client(config) as client:
        out["rss_mb"] = _rss_mb()
        cpu = _cpu_ms()
        await asyncio.sleep(args.idle)
        out["idle_ms_per_min"] = (_cpu_ms() - cpu) * 60 / args.idle
        cpu, rtts = _cpu_ms(), []
        for _ in range(args.publishes):
            started = time.perf_counter()
            await client.publish(topic, PAYLOAD, qos=1)
            rtts.append(time.perf_counter() - started)
        out["qos1_seq_cpu_us"] = (_cpu_ms() - cpu) * 1000 / args.publishes
        out["qos1_rtt_us"] = statistics.median(rtts) * 1e6
        count = args.publishes * 4
        window = asyncio.Semaphore(WINDOW)

        async def one() -> None:
            async with window:
                await client.publish(topic, PAYLOAD, qos=1)

        cpu = _cpu_ms()
        await asyncio.gather(*(one() for _ in range(count)))
        out["qos1_window_cpu_us"] = (_cpu_ms() - cpu) * 1000 / count
        count = args.publishes * 10
        cpu = _cpu_ms()
        for _ in range(count):
            await client.publish(topic, PAYLOAD, qos=0)
        await client.publish(topic, PAYLOAD, qos=1)  # all of them are on the wire
        out["qos0_cpu_us"] = (_cpu_ms() - cpu) * 1000 / count
    return out


def _paho(args: argparse.Namespace) -> dict[str, float]:
    import ssl

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-{uuid.uuid4().hex[:6]}")
    client.tls_set_context(ssl.create_default_context(cafile=args.ca))
    client.max_inflight_messages_set(WINDOW)
    connected, acked = threading.Event(), threading.Condition()
    done: set[int] = set()
    client.on_connect = lambda *a: connected.set()

    def on_publish(c: Any, u: Any, mid: int, *rest: Any) -> None:
        with acked:
            done.add(mid)
            acked.notify_all()

    client.on_publish = on_publish
    client.connect("127.0.0.1", args.tls_port, keepalive=60)  # the certificate names it too
    client.loop_start()
    out: dict[str, float] = {}
    topic = f"bench/{uuid.uuid4().hex[:6]}"
    try:
        if not connected.wait(10):
            raise RuntimeError("paho did not connect")
        out["rss_mb"] = _rss_mb()
        cpu = _cpu_ms()
        time.sleep(args.idle)
        out["idle_ms_per_min"] = (_cpu_ms() - cpu) * 60 / args.idle

        def wait_for(mids: set[int]) -> None:
            with acked:
                if not acked.wait_for(lambda: mids <= done, 30):
                    raise RuntimeError("paho: no PUBACK within 30 s")

        cpu, rtts = _cpu_ms(), []
        for _ in range(args.publishes):
            started = time.perf_counter()
            info = client.publish(topic, PAYLOAD, qos=1)
            wait_for({info.mid})
            rtts.append(time.perf_counter() - started)
        out["qos1_seq_cpu_us"] = (_cpu_ms() - cpu) * 1000 / args.publishes
        out["qos1_rtt_us"] = statistics.median(rtts) * 1e6
        count = args.publishes * 4
        cpu = _cpu_ms()
        mids = {client.publish(topic, PAYLOAD, qos=1).mid for _ in range(count)}
        wait_for(mids)  # paho holds the ones beyond its window of 100 and sends them in turn
        out["qos1_window_cpu_us"] = (_cpu_ms() - cpu) * 1000 / count
        count = args.publishes * 10
        cpu = _cpu_ms()
        for _ in range(count):
            client.publish(topic, PAYLOAD, qos=0)
        wait_for({client.publish(topic, PAYLOAD, qos=1).mid})
        out["qos0_cpu_us"] = (_cpu_ms() - cpu) * 1000 / count
    finally:
        client.loop_stop()
        client.disconnect()
    return out


# --- the run: broker, gateway, one process per client and round -------------------------------

ROWS = (
    ("idle_ms_per_min", "CPU while idle, connected (ms per minute)", "<= 2x paho", 2.0),
    ("rss_mb", "RSS once connected (MB)", "<= paho + 8 MB", None),
    ("qos1_seq_cpu_us", "CPU per sequential QoS 1 publish (us)", "<= 1.2x paho", 1.2),
    ("qos1_rtt_us", "QoS 1 round trip, one at a time (us)", "<= 2x paho", 2.0),
    ("qos1_window_cpu_us", "CPU per QoS 1 publish, 100 in flight (us)", "keep the lead", 1.0),
    ("qos0_cpu_us", "CPU per QoS 0 publish (us)", "keep the lead", 1.0),
)


def _client_process(kind: str, args: argparse.Namespace, quic_port: int, tls_port: int,
                    ca: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--client", kind, "--quic-port", str(quic_port),
               "--tls-port", str(tls_port), "--ca", ca, "--idle", str(args.idle),
               "--publishes", str(args.publishes)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.idle + 300,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} client failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from mqttquic.brokers import embedded_broker
    from mqttquic.gateway import Gateway, GatewayConfig

    rounds: dict[str, list[dict[str, float]]] = {"ours": [], "paho": []}
    with tempfile.TemporaryDirectory() as folder:
        async with embedded_broker("mosquitto") as (description, broker_port):
            config = GatewayConfig(upstream_port=broker_port, quic_port=0, tcp_port=0,
                                   identity_dir=folder)
            async with Gateway(config) as gateway:
                print(f"broker: {description}; gateway on udp/{gateway.quic_port},"
                      f" tcp/{gateway.tcp_port}", flush=True)
                loop = asyncio.get_running_loop()
                for number in range(args.rounds):
                    for kind in ("ours", "paho"):  # interleaved: drift hits both alike
                        result = await loop.run_in_executor(
                            None, _client_process, kind, args, gateway.quic_port,
                            gateway.tcp_port, str(gateway.ca_file))
                        rounds[kind].append(result)
                        print(f"round {number + 1} {kind}: {result}", flush=True)
    return {kind: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for kind, results in rounds.items()}


def _table(medians: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    ours, paho = medians["ours"], medians["paho"]
    lines = [f"Loopback, {args.rounds} rounds (medians), idle {args.idle:g} s,"
             f" {args.publishes} sequential publishes; {os.uname().machine},"
             f" Python {sys.version.split()[0]}.", "",
             "| figure | ours | paho TCP+TLS | ours / paho | goal | met |",
             "|---|---|---|---|---|---|"]
    for key, label, goal, bound in ROWS:
        a, b = ours[key], paho[key]
        if key == "rss_mb":
            ratio, met = f"+{a - b:.1f} MB", a <= b + 8
        else:
            ratio, met = f"{a / b:.2f}x", bound is not None and a / b <= bound
        lines.append(f"| {label} | {a:.1f} | {b:.1f} | {ratio} | {goal} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds connected at rest")
    parser.add_argument("--publishes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=("ours", "paho"), help=argparse.SUPPRESS)
    parser.add_argument("--quic-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client == "ours":
        print(json.dumps(asyncio.run(_ours(args))))
        return
    if args.client == "paho":
        print(json.dumps(_paho(args)))
        return
    table = _table(asyncio.run(_run(args)), args)
    print("\n" + table)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "device_cost.md").write_text("# What a small device pays\n\n" + table)


if __name__ == "__main__":
    main()
