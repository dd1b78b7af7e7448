"""The MQTT codec: the Cython extension when it is built, else the pure twin.

``IMPLEMENTATION`` says which one was loaded (``"cython"`` or ``"python"``).
``MQTTQUIC_NO_EXTENSIONS=1`` forces the pure twin (see ``_env``). This module
imports neither aioquic nor paho-mqtt: devices that only need the codec pay
for nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._env import no_extensions

if TYPE_CHECKING:
    from ._codec_py import *  # noqa: F403
    from ._codec_py import __all__
elif no_extensions():
    from ._codec_py import *  # noqa: F403
    from ._codec_py import __all__
else:
    try:
        from ._codec import *  # noqa: F403
        from ._codec import __all__  # noqa: F401
    except ImportError as _error:
        # CPython without the extension (a failed build, a wheel for another platform):
        # everything works, only slower; say so once, here, where it is decided.
        import logging as _logging

        _logging.getLogger("mqttquic.codec").warning(
            "the Cython codec is not built (%s): using the pure-Python codec, which is"
            " slower; set MQTTQUIC_NO_EXTENSIONS=1 to choose it without this warning", _error)
        from ._codec_py import *  # noqa: F403
