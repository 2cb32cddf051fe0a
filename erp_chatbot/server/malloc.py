"""glibc's malloc for a long-lived server: fewer arenas, a fixed mmap threshold."""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)


def tune_malloc(arenas: int | None, mmap_threshold_mb: int | None) -> None:
    """glibc's malloc for a long-lived server (``server.malloc_arenas``, ``server.malloc_mmap_threshold_mb``).

    Each request thread may otherwise get an arena of its own (up to 8 per core, 64 MB reserved
    each): under 16 demo clients a cap of 2 lowers the server's peak RSS at the same answers/s.
    glibc also raises its mmap threshold (up to 32 MB) each time a mapped block is freed, after
    which ~20 MB saved prompt states live in the heap and their memory stays there when they are
    let go: a fixed 4 MB threshold lowers the peak further (bench/README.md, ``bench/runtime.py``).
    ``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` in the environment win; elsewhere than glibc, nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    options = [
        ("MALLOC_ARENA_MAX", -8, arenas),  # mallopt's M_ARENA_MAX
        ("MALLOC_MMAP_THRESHOLD_", -3, mmap_threshold_mb and mmap_threshold_mb << 20),  # M_MMAP_THRESHOLD
    ]
    for variable, option, value in options:
        if value is not None and variable not in os.environ and libc.mallopt(option, value) != 1:
            logger.warning("could not set %s to %d", variable, value)
