"""``server.malloc_arenas``: the server process caps glibc's malloc arenas (glibc only)."""

import os
import subprocess
import sys
import textwrap

import pytest

COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from erp_chatbot.server.app import limit_malloc_arenas

    limit_malloc_arenas(None if sys.argv[1] == "none" else int(sys.argv[1]))
    held, started = [], threading.Barrier(8)

    def allocate():
        started.wait()  # all threads alive at once, each asking malloc for memory
        held.append([bytearray(20_000) for _ in range(50)])

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        stream = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(stream))
        libc.fclose(ctypes.c_void_p(stream))
        print(open(report.name).read().count("<heap nr="))
    """
)


def arenas_used(limit: str) -> int:
    env = {**os.environ, "PYTHONMALLOC": "malloc"}  # every object through malloc, so each thread touches an arena
    result = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, limit], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_cap_holds_threads_to_its_arenas():
    assert arenas_used("none") > 2  # glibc's default: a new arena for each new thread, up to 8 per core
    assert arenas_used("2") <= 2
