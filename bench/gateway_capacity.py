"""Where one gateway ends: idle QUIC connections per GB, and QoS 1 messages per second
per core relayed to mosquitto.

    python bench/gateway_capacity.py [--connections 400] [--publishers 3] [--seconds 10]

The gateway runs in a process of its own (``python -m mqttquic gateway``), in front of
mosquitto, on loopback; load comes from several client processes (mqttquic over QUIC).
Its memory is VmRSS, its CPU user+sys, both read from /proc/<pid>.

- Idle connections: ``--connections`` QUIC connections (each with its control stream
  and its upstream TCP connection), opened by ``--clients`` processes and held; the
  RSS growth per connection gives connections per GB.
- Throughput: ``--publishers`` processes publish QoS 1 with 100 in flight each, for
  ``--seconds``; acknowledged messages per second, and per second of the gateway's CPU
  (a core's worth).

Writes ``results/gateway_capacity.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAYLOAD = b"x" * 64
WINDOW = 100
TICKS = os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _config(args: argparse.Namespace, name: str) -> Any:
    from mqttquic import ConnectionConfig

    return ConnectionConfig(host="127.0.0.1", quic_port=args.quic_port, ca_file=args.ca,
                            server_name="localhost", transport="quic", keepalive=120,
                            zero_rtt=False, device_id=f"{name}-{uuid.uuid4().hex[:8]}")


# --- the load processes -----------------------------------------------------------------------

async def _hold(args: argparse.Namespace) -> None:
    """Open ``--count`` connections, say so, hold them until stdin closes."""
    from mqttquic import Client

    clients = [Client(_config(args, "idle")) for _ in range(args.count)]
    for start in range(0, len(clients), 20):  # in batches: the gateway accepts them in turn
        await asyncio.gather(*(c.connect() for c in clients[start:start + 20]))
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(c.disconnect() for c in clients))


async def _publish(args: argparse.Namespace) -> None:
    """Publish QoS 1 with 100 in flight for ``--seconds``; print how many were acked."""
    from mqttquic import Client

    async with Client(_config(args, "pub")) as client:
        topic = f"bench/capacity/{uuid.uuid4().hex[:6]}"
        acked = 0
        deadline = time.monotonic() + args.seconds

        async def worker() -> None:
            nonlocal acked
            while time.monotonic() < deadline:
                await client.publish(topic, PAYLOAD, qos=1)
                acked += 1

        await asyncio.gather(*(worker() for _ in range(WINDOW)))
    print(json.dumps({"acked": acked}), flush=True)


# --- the run ------------------------------------------------------------------------------------

def _load(kind: str, args: argparse.Namespace, quic_port: int, ca: str,
          **extra: Any) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--role", kind, "--quic-port", str(quic_port),
               "--ca", ca, "--seconds", str(args.seconds)]
    for name, value in extra.items():
        command += [f"--{name}", str(value)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


async def _run(args: argparse.Namespace) -> dict[str, float]:
    from mqttquic.brokers import embedded_broker, free_port

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        async with embedded_broker("mosquitto") as (description, broker_port):
            quic_port = free_port()
            gateway = subprocess.Popen(
                [sys.executable, "-m", "mqttquic", "gateway", "--upstream",
                 f"127.0.0.1:{broker_port}", "--quic", f"127.0.0.1:{quic_port}", "--tcp", "off",
                 "--identity-dir", folder, "--max-connections", str(args.connections + 100),
                 "--reset-key-file", os.path.join(folder, "reset.key")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ca = os.path.join(folder, "gateway-ca.pem")
            try:
                for _ in range(200):
                    if os.path.exists(ca):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # listening
                out.update(await _idle(args, gateway.pid, quic_port, ca))
                out.update(await _throughput(args, gateway.pid, quic_port, ca))
            finally:
                gateway.terminate()
                gateway.wait(10)
    return out


async def _idle(args: argparse.Namespace, pid: int, quic_port: int, ca: str) -> dict[str, float]:
    before = _rss_mb(pid)
    per_process = -(-args.connections // args.clients)
    holders = [_load("hold", args, quic_port, ca, count=per_process)
               for _ in range(args.clients)]
    loop = asyncio.get_running_loop()
    for holder in holders:
        assert holder.stdout is not None
        line = await loop.run_in_executor(None, holder.stdout.readline)
        if line.strip() != "held":
            raise RuntimeError("a load process did not open its connections")
    await asyncio.sleep(2.0)  # settled
    after = _rss_mb(pid)
    for holder in holders:
        holder.communicate("", timeout=120)
    connections = per_process * args.clients
    per_connection_kb = (after - before) * 1024 / connections
    print(f"idle: {connections} connections, gateway RSS {before:.1f} -> {after:.1f} MB",
          flush=True)
    return {"connections": connections, "rss_before_mb": before, "rss_after_mb": after,
            "kb_per_connection": per_connection_kb,
            "connections_per_gb": 1024 * 1024 / per_connection_kb}


async def _throughput(args: argparse.Namespace, pid: int, quic_port: int,
                      ca: str) -> dict[str, float]:
    cpu = _cpu_s(pid)
    started = time.monotonic()
    publishers = [_load("publish", args, quic_port, ca) for _ in range(args.publishers)]
    loop = asyncio.get_running_loop()
    results = [json.loads((await loop.run_in_executor(None, p.communicate, "", 120))[0])
               for p in publishers]
    elapsed = time.monotonic() - started
    gateway_cpu = _cpu_s(pid) - cpu
    acked = sum(r["acked"] for r in results)
    print(f"throughput: {acked} QoS 1 acked in {elapsed:.1f} s; gateway CPU {gateway_cpu:.1f} s",
          flush=True)
    return {"acked": acked, "msgs_per_s": acked / args.seconds,
            "gateway_cpu_s": gateway_cpu, "msgs_per_cpu_s": acked / gateway_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4, help="processes holding connections")
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--role", choices=("hold", "publish"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quic-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "hold":
        asyncio.run(_hold(args))
        return
    if args.role == "publish":
        asyncio.run(_publish(args))
        return
    result = asyncio.run(_run(args))
    table = (f"Loopback, {os.cpu_count()} cores ({os.uname().machine}); the gateway in its own"
             f" process, load from {args.clients} (idle) and {args.publishers} (publishing)"
             " client processes on the same machine.\n\n"
             "| figure | value |\n|---|---|\n"
             f"| idle QUIC connections held | {result['connections']:.0f} |\n"
             f"| gateway RSS, before and with them | {result['rss_before_mb']:.1f} MB,"
             f" {result['rss_after_mb']:.1f} MB |\n"
             f"| memory per idle connection | {result['kb_per_connection']:.0f} KiB |\n"
             f"| idle connections per GB | {result['connections_per_gb']:,.0f} |\n"
             f"| QoS 1 messages relayed per second | {result['msgs_per_s']:,.0f} |\n"
             f"| per second of the gateway's CPU (one core) | {result['msgs_per_cpu_s']:,.0f} |\n")
    print("\n" + table)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "gateway_capacity.md").write_text("# The gateway's capacity\n\n" + table)


if __name__ == "__main__":
    main()
