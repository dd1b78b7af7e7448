"""Checks on files whose content the process trusts (session tickets, the gateway's key)."""

from __future__ import annotations

import os
import stat

__all__ = ["why_untrusted"]


def why_untrusted(status: os.stat_result, *, secret: bool = False) -> str:
    """Why a file with this status must not be trusted, or "".

    Another user who owns the file, or who may write it, could have put anything in it.
    ``secret``: the file holds a private key, which others must not read either."""
    if not stat.S_ISREG(status.st_mode):
        return "is not a regular file"
    getuid = getattr(os, "getuid", None)
    if getuid is not None and status.st_uid != getuid():
        return f"is owned by uid {status.st_uid}, not by this user"
    mode = stat.S_IMODE(status.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by others (mode {mode:04o})"
    if secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"is readable by others (mode {mode:04o})"
    return ""
