"""What the durable outbox costs: CPU per pipelined QoS 1 publish (100 in flight) without
an outbox, and with one at ``outbox_sync="normal"`` and ``"full"``, in one run.

    python bench/outbox_cost.py [--publishes 2000] [--rounds 3]

Each variant runs in a process of its own and measures itself (user+sys CPU, worker
threads included), against the same gateway and mosquitto on loopback; medians of
``--rounds``. The goal (issue 21): with ``"normal"``, at most 30% more CPU than without.
Writes ``results/outbox_cost.md``.
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
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAYLOAD = b"x" * 32
WINDOW = 100
VARIANTS = ("none", "normal", "full")


async def _client(args: argparse.Namespace) -> dict[str, float]:
    from mqttquic import Client, ConnectionConfig

    with tempfile.TemporaryDirectory() as folder:
        outbox = None if args.variant == "none" else os.path.join(folder, "outbox.db")
        config = ConnectionConfig(host="127.0.0.1", quic_port=args.quic_port, ca_file=args.ca,
                                  server_name="localhost", transport="quic",
                                  device_id=f"ob-{uuid.uuid4().hex[:6]}", outbox=outbox,
                                  outbox_sync="full" if args.variant == "full" else "normal")
        topic = f"bench/outbox/{uuid.uuid4().hex[:6]}"
        async with Client(config) as client:
            window = asyncio.Semaphore(WINDOW)

            async def one() -> None:
                async with window:
                    await client.publish(topic, PAYLOAD, qos=1)

            await asyncio.gather(*(one() for _ in range(200)))  # warm
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(args.publishes)))
            return {"cpu_us": (time.process_time() - cpu) * 1e6 / args.publishes,
                    "msg_per_s": args.publishes / (time.perf_counter() - wall)}


async def _run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from mqttquic.brokers import embedded_broker
    from mqttquic.gateway import Gateway, GatewayConfig

    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        async with embedded_broker("mosquitto") as (_, broker_port):
            config = GatewayConfig(upstream_port=broker_port, quic_port=0, tcp_port=None,
                                   identity_dir=folder)
            async with Gateway(config) as gateway:
                for _ in range(args.rounds):
                    for variant in VARIANTS:  # interleaved: drift hits all alike
                        done = await asyncio.to_thread(subprocess.run, [
                            sys.executable, __file__, "--variant", variant, "--quic-port",
                            str(gateway.quic_port), "--ca", str(gateway.ca_file),
                            "--publishes", str(args.publishes)],
                            capture_output=True, text=True, timeout=300, check=True)
                        results[variant].append(json.loads(done.stdout.splitlines()[-1]))
                        print(variant, results[variant][-1], flush=True)
    return {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for v, rs in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--quic-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(asyncio.run(_client(args))))
        return
    medians = asyncio.run(_run(args))
    base = medians["none"]["cpu_us"]
    lines = [f"Loopback, QoS 1 with {WINDOW} in flight, {args.publishes} publishes, medians of"
             f" {args.rounds} rounds; {os.uname().machine}.", "",
             "| outbox | CPU per publish (us) | vs none | msg/s |", "|---|---|---|---|"]
    for variant in VARIANTS:
        row = medians[variant]
        lines.append(f"| {variant} | {row['cpu_us']:.1f} | {row['cpu_us'] / base:.2f}x |"
                     f" {row['msg_per_s']:,.0f} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "outbox_cost.md").write_text("# What the outbox costs\n\n" + table)


if __name__ == "__main__":
    main()
