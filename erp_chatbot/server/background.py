"""Serve an app from a background thread on a free loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def running_server(app: Any, timeout: float = 30) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread; yields its URL and stops it on exit."""
    import uvicorn
    from sse_starlette.sse import AppStatus

    # sse-starlette (<2, pinned by LangServe) keeps one asyncio.Event per process, bound to the first
    # event loop that streamed; each server here runs its own loop, so start every one afresh.
    AppStatus.should_exit_event = None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the app did not start on port {port} within {timeout} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
