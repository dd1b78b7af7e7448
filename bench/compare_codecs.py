"""Measure every codec in one run and print ops/s with the ratios between them.

    python bench/compare_codecs.py [--quick]

Each operation is timed with timeit (best of several repeats, each about
0.2 s). Ratios compare mqttquic, at the same MQTT version as the peer, with
each peer. The last block checks the targets of the codec issue.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from peers import STREAM_PACKETS, VARINTS, Peer, all_peers  # noqa: E402

from mqttquic import codec  # noqa: E402

OPS = {
    "encode_qos0": ("encode QoS 0 PUBLISH (32 B payload)", 1),
    "encode_qos1": ("encode QoS 1 PUBLISH (1 KiB payload)", 1),
    "decode_stream": ("decode 10,000 QoS 0 in 1400 B chunks (packets/s)", STREAM_PACKETS),
    "decode_mixed": ("decode 10,000 QoS 0, a new topic each packet (packets/s)", STREAM_PACKETS),
    "varint_encode": ("varint encode", len(VARINTS)),
    "varint_decode": ("varint decode", len(VARINTS)),
}


def measure(peer: Peer, op: str, repeats: int, budget: float) -> float:
    """Operations per second (packets or varints per second where one call does many)."""
    spec = peer.ops[op]()
    timer = timeit.Timer(spec.stmt, globals=dict(spec.namespace))
    number, elapsed = timer.autorange()
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    best = min(timer.repeat(repeat=repeats, number=number))
    return number * OPS[op][1] / best


def fmt(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:8.2f}M"
    return f"{rate / 1e3:8.1f}k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args()
    repeats, budget = (3, 0.05) if args.quick else (5, 0.2)

    peers = all_peers()
    results: dict[tuple[str, str], float] = {}
    for peer in peers:
        for op in peer.ops:
            results[peer.name, op] = measure(peer, op, repeats, budget)

    ours = {name: [p for p in peers if p.name.startswith(f"mqttquic {name}")]
            for name in ("cython", "python")}

    def ours_at(kind: str, version: int, op: str) -> float | None:
        for p in ours[kind]:
            if p.protocol_version == version and (p.name, op) in results:
                return results[p.name, op]
        return None

    print(f"mqttquic.codec.IMPLEMENTATION = {codec.IMPLEMENTATION!r}; Python {sys.version.split()[0]}")
    for op, (title, _) in OPS.items():
        print(f"\n{title}")
        print(f"  {'implementation':26} {'ops/s':>9}   {'cython is':>10}   {'python is':>10}")
        for peer in peers:
            if (peer.name, op) not in results:
                continue
            rate = results[peer.name, op]
            cells = []
            for kind in ("cython", "python"):
                mine = ours_at(kind, peer.protocol_version, op)
                cells.append(f"{mine / rate:9.2f}x" if mine else f"{'-':>10}")
            print(f"  {peer.name:26} {fmt(rate)}   {cells[0]}   {cells[1]}")

    print("\ntargets (ratios in this run)")
    checks: list[tuple[str, str, str, str, float]] = [
        ("cython", "encode_qos0", "mqtt5 (Rust)", "Cython QoS 0 encode vs mqtt5", 4),
        ("cython", "encode_qos0", "paho-mqtt", "Cython QoS 0 encode vs paho", 12),
        ("cython", "decode_stream", "mqtt5 (Rust)", "Cython chunked decode vs mqtt5", 4),
        ("cython", "decode_stream", "gmqtt", "Cython chunked decode vs gmqtt", 25),
        ("python", "encode_qos0", "gmqtt", "pure QoS 0 encode vs gmqtt", 1.5),
        ("python", "decode_stream", "gmqtt", "pure chunked decode vs gmqtt", 1.5),
        ("python", "encode_qos0", "paho-mqtt", "pure QoS 0 encode vs paho", 1),
        ("python", "decode_stream", "paho-mqtt", "pure chunked decode vs paho", 1),
    ]
    by_name = {p.name: p for p in peers}
    for kind, op, peer_name, label, target in checks:
        peer = by_name.get(peer_name)
        mine = ours_at(kind, peer.protocol_version, op) if peer else None
        if peer is None or mine is None or (peer_name, op) not in results:
            print(f"  {label:36} n/a (peer or extension missing)")
            continue
        ratio = mine / results[peer_name, op]
        print(f"  {label:36} {ratio:7.2f}x  target >= {target:g}x  {'ok' if ratio >= target else 'MISSED'}")
    for op in ("encode_qos0", "encode_qos1", "decode_stream"):
        cy, py = ours_at("cython", 4, op), ours_at("python", 4, op)
        if cy and py:
            ratio = cy / py
            print(f"  {'Cython vs pure twin, ' + op:36} {ratio:7.2f}x  target >= 8x  "
                  f"{'ok' if ratio >= 8 else 'MISSED'}")


if __name__ == "__main__":
    main()
