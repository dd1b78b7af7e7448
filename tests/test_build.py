"""The build: a failed compile still installs the pure twin, loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

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


def _build_dist(source: Path, out: Path, *kinds: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MQTTQUIC_NO_EXTENSIONS"}
    return subprocess.run([sys.executable, "-m", "build", "--no-isolation", *kinds, "-o", str(out),
                           str(source)], env=dict(base, **env), capture_output=True, text=True,
                          timeout=300)


def test_failed_compile_makes_a_pure_wheel(tmp_path: Path) -> None:
    """Never a platform tag on a wheel without the extension (pip would trust it)."""
    _copy_source(tmp_path / "src")
    result = _build_dist(tmp_path / "src", tmp_path / "dist", "--wheel", CC="false")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "dist").glob("*.whl")] == ["mqttquic-0.1.0-py3-none-any.whl"]
    strict = _build_dist(tmp_path / "src", tmp_path / "strict", "--wheel", CC="false",
                         MQTTQUIC_REQUIRE_EXTENSION="1")
    assert strict.returncode != 0
    assert "MQTTQUIC_REQUIRE_EXTENSION is set" in strict.stdout + strict.stderr


def test_lean_wheel_and_a_complete_sdist_that_builds_without_cython(tmp_path: Path) -> None:
    _copy_source(tmp_path / "src")
    for name in ("LICENSE", "MANIFEST.in", "requirements.txt", "ARCHITECTURE.md"):
        shutil.copy(ROOT / name, tmp_path / "src" / name)
    for folder in ("tests", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / "src" / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    result = _build_dist(tmp_path / "src", tmp_path / "dist", "--wheel", "--sdist")
    assert result.returncode == 0, result.stderr

    # The wheel: the stripped extension and the Python that runs, nothing to build with.
    [wheel] = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "wheel")
    assert not [n for n in names if n.endswith((".c", ".pyx", "_packets_c.py"))], names
    objects = [n for n in names if n.endswith(".so")]
    assert len(objects) == 2 and "mqttquic-0.1.0.dist-info/licenses/LICENSE" in names
    for name in objects:
        symbols = subprocess.run(["nm", str(tmp_path / "wheel" / name)], capture_output=True,
                                 text=True)
        assert "no symbols" in symbols.stderr, f"{name} is not stripped"

    # The sdist: the license, the tests with their helpers, the examples, the generated C.
    [sdist] = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        # Our own sdist, just built; the "data" filter where this Python has it (3.12+,
        # and security updates of older ones).
        safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(tmp_path / "sdist", **safe)
    unpacked = tmp_path / "sdist" / "mqttquic-0.1.0"
    for name in ("LICENSE", "tests/conftest.py", "tests/brokers.py", "examples/mqtt_quic_client.py",
                 "examples/mqtt-quic-config.example.json", "mqttquic/_codec.c",
                 "mqttquic/_packets_c.c", "mqttquic/_codec.pyx", "ARCHITECTURE.md"):
        assert (unpacked / name).is_file(), name
    # Without Cython (a stub that fails to import stands in front of it), the shipped C
    # is compiled.
    (tmp_path / "nocython" / "Cython").mkdir(parents=True)
    (tmp_path / "nocython" / "Cython" / "__init__.py").write_text(
        "raise ImportError('Cython hidden by the test')\n")
    built = _build(unpacked, PYTHONPATH=str(tmp_path / "nocython"))
    assert built.returncode == 0, built.stderr
    assert "compiling the C files shipped in the sdist" in built.stdout
    assert len(list((unpacked / "mqttquic").glob("*.so"))) == 2
    assert _implementation(unpacked, MQTTQUIC_NO_EXTENSIONS="0") == "cython"
