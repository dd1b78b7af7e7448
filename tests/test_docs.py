"""``make docs``: the API reference builds from the docstrings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODULES = ["mqttquic", "mqttquic.client", "mqttquic.config", "mqttquic.changes",
           "mqttquic.message", "mqttquic.errors", "mqttquic.codec", "mqttquic.gateway",
           "mqttquic.topics"]


def test_api_reference_builds(tmp_path: Path) -> None:
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert " ".join(MODULES[1:4]) in makefile  # the same modules as make docs
    result = subprocess.run([sys.executable, "-m", "pdoc", "-o", str(tmp_path), *MODULES],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "mqttquic" / "client.html").read_text()
    for name in ("connection_changes", "wait_connected", "session_present", "on_disconnect"):
        assert name in page, name
