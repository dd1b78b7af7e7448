"""``python -m mqttquic info``: what is installed, for a bug report or a quick check."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

__all__ = ["describe"]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> list[tuple[str, str]]:
    """(name, value) lines: versions, the codec in use and where it was loaded from."""
    from . import codec

    module = sys.modules[codec.encode.__module__]
    where = getattr(module, "__file__", None) or "?"
    implementation = codec.IMPLEMENTATION
    if implementation == "python":
        from ._env import no_extensions

        implementation += (" (MQTTQUIC_NO_EXTENSIONS is set)" if no_extensions()
                           else " (the Cython extension is not built)")
    return [
        ("mqttquic", _version("mqttquic")),
        ("codec", implementation),
        ("codec file", where),
        ("aioquic", _version("aioquic")),
        ("paho-mqtt", _version("paho-mqtt")),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"
                   f" ({sys.executable})"),
        ("platform", f"{platform.system()} {platform.machine()}"),
    ]
