"""The build: a failed compile still installs the pure twin, loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _copy_source(dest: Path) -> None:
    shutil.copytree(ROOT / "mqttquic", dest / "mqttquic", symlinks=True,
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)


def _build(dest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # The suite's own run may set MQTTQUIC_NO_EXTENSIONS; each build here says what it wants.
    base = {k: v for k, v in os.environ.items() if k != "MQTTQUIC_NO_EXTENSIONS"}
    return subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
                          env=dict(base, **env), capture_output=True, text=True, timeout=300)


def _implementation(dest: Path, **env: str) -> str:
    code = "import mqttquic.codec as c; print(c.IMPLEMENTATION)"
    # -S: no site-packages, so the editable install of the checkout does not shadow the copy.
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=dest, capture_output=True, text=True,
                         env=dict(os.environ, **env), check=True)
    return out.stdout.strip()


def test_failed_compile_installs_pure_twin_with_a_warning(tmp_path: Path) -> None:
    _copy_source(tmp_path)
    result = _build(tmp_path, CC="false")
    assert result.returncode == 0, result.stderr
    assert "WARNING: the mqttquic Cython codec could not be compiled" in result.stderr
    assert not list((tmp_path / "mqttquic").glob("*.so"))
    env = {k: v for k, v in os.environ.items() if k != "MQTTQUIC_NO_EXTENSIONS"}
    assert _implementation(tmp_path, **env) == "python"


def test_env_var_builds_no_extension(tmp_path: Path) -> None:
    _copy_source(tmp_path)
    result = _build(tmp_path, MQTTQUIC_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert "building no extension" in result.stdout
    assert not list((tmp_path / "mqttquic").glob("*.so"))
