"""``server.malloc_arenas`` and ``server.malloc_mmap_threshold_mb``: the server process tunes glibc's
malloc (glibc only)."""

import os
import subprocess
import sys
import textwrap

import pytest

COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from erp_chatbot.server.malloc import tune_malloc

    tune_malloc(None if sys.argv[1] == "none" else int(sys.argv[1]), None)
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


def run_counting(script: str, setting: str, **env: str) -> int:
    """Run ``script`` with ``setting`` in a fresh interpreter (no MALLOC_* variables) and read its count."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env}
    result = subprocess.run(
        [sys.executable, "-c", script, setting], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def arenas_used(limit: str) -> int:
    return run_counting(COUNT_ARENAS, limit, PYTHONMALLOC="malloc")  # every object through malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_cap_holds_threads_to_its_arenas():
    assert arenas_used("none") > 2  # glibc's default: a new arena for each new thread, up to 8 per core
    assert arenas_used("2") <= 2


MAPPED_AFTER_REUSE = textwrap.dedent(
    """
    import ctypes, sys
    from erp_chatbot.server.malloc import tune_malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    tune_malloc(None, None if sys.argv[1] == "none" else int(sys.argv[1]))
    state = bytearray(20 << 20)  # a saved prompt state's size: mapped at first
    del state  # freeing a mapped block: glibc's sliding threshold rises to 20 MB
    before = libc.mallinfo2().hblks
    state = bytearray(20 << 20)
    print(libc.mallinfo2().hblks - before)  # 1: mapped again (freed to the system later); 0: in the heap
    """
)


def mapped_after_reuse(threshold: str) -> int:
    return run_counting(MAPPED_AFTER_REUSE, threshold)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_fixed_mmap_threshold_keeps_large_blocks_out_of_the_heap():
    assert mapped_after_reuse("none") == 0  # glibc's sliding threshold: the second block lands in the heap
    assert mapped_after_reuse("4") == 1
