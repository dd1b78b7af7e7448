"""pytest-benchmark view of the same operations as compare_codecs.py.

    pytest bench --benchmark-only

compare_codecs.py prints the ratio table; this gives pytest-benchmark's
statistics (and its --benchmark-compare history) for each peer and operation.
"""

from __future__ import annotations

from typing import Any

import pytest
from peers import STREAM_PACKETS, Op, all_peers

PEERS = all_peers()
CASES = [(peer, op) for peer in PEERS for op in peer.ops]


def _function(spec: Op) -> Any:
    namespace = dict(spec.namespace)
    exec(f"def _op():\n    return {spec.stmt}", namespace)  # noqa: S102 - our own statement
    return namespace["_op"]


@pytest.mark.parametrize(("peer", "op"), CASES, ids=[f"{p.name}-{op}" for p, op in CASES])
def test_codec(benchmark: Any, peer: Any, op: str) -> None:
    benchmark.group = op
    fn = _function(peer.ops[op]())
    result = benchmark(fn)
    if op.startswith("decode"):
        assert result == STREAM_PACKETS
