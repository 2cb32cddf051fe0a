"""The access log without secrets: query parameters that may carry a key are written as ``***``.

Keys belong in headers and the server refuses them anywhere else, but a client that puts one in
the URL (``?api_key=...``) still had it written to uvicorn's access log, where anyone who reads
logs could reuse it.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMETER = re.compile(r"(?i)([?&](?:[^=&]*(?:key|token|secret|password|auth)[^=&]*)=)[^&#\s]*")
ACCESS_LOGGER = "uvicorn.access"


class RedactSecrets(logging.Filter):
    """Rewrites the path argument of uvicorn's access records (``client, method, path, ...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = SECRET_PARAMETER.sub(r"\1***", args[2])
            record.args = tuple(args)
        return True


def redact_access_log() -> None:
    """Install ``RedactSecrets`` on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
