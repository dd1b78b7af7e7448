"""The one switch between the Cython codec and its pure-Python twin.

``MQTTQUIC_NO_EXTENSIONS`` set to anything but ``""`` or ``"0"`` means: build no
extension (setup.py loads this file by path) and import the pure twin
(codec.py). Interpreters other than CPython always get the pure twin.
"""

from __future__ import annotations

import os
import platform

ENV_VAR = "MQTTQUIC_NO_EXTENSIONS"


def flag(name: str) -> bool:
    """An environment switch: set to anything but ``""`` or ``"0"``."""
    return os.environ.get(name, "") not in ("", "0")


def no_extensions() -> bool:
    if platform.python_implementation() != "CPython":
        return True
    return flag(ENV_VAR)
