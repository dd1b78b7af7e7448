"""Build the Cython codec; fall back to the pure-Python twin when that fails.

``MQTTQUIC_NO_EXTENSIONS=1`` builds no extension at all. A failed compile (no
compiler, no Python headers) still installs the package, with a loud warning.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent


def _no_extensions() -> bool:
    # The switch lives in one place, mqttquic/_env.py; load it by path (the
    # package is not importable before it is built).
    spec = importlib.util.spec_from_file_location("_mqttquic_env", HERE / "mqttquic" / "_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return bool(module.no_extensions())


WARNING = """
******************************************************************************
WARNING: the mqttquic Cython codec could not be compiled ({reason}).
mqttquic is installed with its pure-Python codec: everything works, only
slower. Install a C compiler and the Python headers, then reinstall, to get
the fast codec.
******************************************************************************
"""


class OptionalBuildExt(build_ext):
    """build_ext that reports failure instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure means: use the twin
            sys.stderr.write(WARNING.format(reason=exc))

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(WARNING.format(reason=exc))


def _extensions() -> list:  # type: ignore[type-arg]
    if _no_extensions():
        print("MQTTQUIC_NO_EXTENSIONS is set: building no extension, pure-Python codec only")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        sys.stderr.write(WARNING.format(reason=f"Cython is not available: {exc}"))
        return []
    return cythonize(
        ["mqttquic/_packets_c.py", "mqttquic/_codec.pyx"],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
