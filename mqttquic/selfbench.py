"""``mqttquic bench``: how fast this machine's codec is, with nothing else installed.

For a device (a Raspberry Pi, say) deciding whether the Cython build is worth it:
it times the loaded codec and, where both exist, its twin. The comparison against
other MQTT libraries lives in the repository's ``bench/`` folder.
"""

from __future__ import annotations

import importlib
import timeit

from ._env import no_extensions

__all__ = ["run_selfbench"]

TOPIC = "device/abc123/telemetry/sensors"
PAYLOAD = b"x" * 32


def _rate(stmt: str, namespace: dict[str, object], per_call: int = 1) -> float:
    timer = timeit.Timer(stmt, globals=namespace)
    number, elapsed = timer.autorange()
    best = min(timer.repeat(repeat=3, number=number))
    return number * per_call / best


def _measure(module_name: str) -> dict[str, float]:
    codec = importlib.import_module(module_name)
    stream = codec.encode_publish(TOPIC, PAYLOAD) * 10_000
    chunks = [stream[i:i + 1400] for i in range(0, len(stream), 1400)]

    def decode() -> int:
        decoder = codec.StreamDecoder()
        return sum(len(decoder.feed(chunk)) for chunk in chunks)

    return {
        "encode QoS 0 PUBLISH (ops/s)": _rate("encode(TOPIC, PAYLOAD)", {
            "encode": codec.encode_publish, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD}),
        "decode stream, 1400 B chunks (packets/s)": _rate("decode()", {"decode": decode},
                                                           per_call=10_000),
    }


def run_selfbench() -> list[str]:
    """Measure the loaded codec and its twin; the lines of a table for people."""
    lines: list[str] = []
    twins = ["mqttquic._codec_py"]
    if not no_extensions():
        try:
            importlib.import_module("mqttquic._codec")
            twins.insert(0, "mqttquic._codec")
        except ImportError:
            lines.append("the Cython codec is not built here: pure Python only")
    results = {name: _measure(name) for name in twins}
    labels = {"mqttquic._codec": "cython", "mqttquic._codec_py": "python"}
    lines.append(f"{'':44}" + "".join(f"{labels[name]:>14}" for name in twins))
    for metric in results[twins[0]]:
        cells = "".join(f"{results[name][metric] / 1e6:13.2f}M" for name in twins)
        lines.append(f"{metric:44}{cells}")
    if len(twins) == 2:
        for metric in results[twins[0]]:
            ratio = results[twins[0]][metric] / results[twins[1]][metric]
            lines.append(f"cython / python, {metric.split(' (')[0]}: {ratio:.1f}x")
    return lines
