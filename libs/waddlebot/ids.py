"""Random identifiers for sessions and executions, cheap enough for the hot path.

``uuid.uuid4()`` reads 16 bytes from the kernel per id, and CPython releases the GIL
around that ``getrandom`` call: in a busy threaded worker every id then waits for the
GIL to come back. :func:`new_id` reads the kernel's randomness in blocks of 1 KiB per
thread and hands out 16 bytes at a time — the same unpredictability (``os.urandom``),
one system call per 64 ids.
"""

from __future__ import annotations

import os
import threading

_BLOCK = 1024
_SIZE = 16
_local = threading.local()


def new_id() -> str:
    """32 lowercase hex characters of kernel randomness (128 bits), like ``uuid4().hex``."""
    state = _local.__dict__
    block = state.get("block")
    offset = state.get("offset", _BLOCK)
    if block is None or offset >= _BLOCK or state.get("pid") != os.getpid():
        block = state["block"] = os.urandom(_BLOCK)
        state["pid"] = os.getpid()
        offset = 0
    state["offset"] = offset + _SIZE
    return block[offset : offset + _SIZE].hex()
