"""Following the model registry: when its active version moves, load it on a thread and switch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from erp_chatbot.models.registry import REGISTRY, active_version_path

logger = logging.getLogger(__name__)


class RegistryFollower:
    """Notices (one ``stat`` per call) whether the registry's active version moved away from the
    model being served, and then loads it on a thread with ``load``; requests keep the old model
    until it is loaded. A version that fails to load is not retried on every request."""

    def __init__(self, registry_dir: Path, load: Callable[[Path], None]) -> None:
        self.registry_dir = registry_dir
        self.load = load
        self._seen: float | None = None
        self._loading = threading.Lock()

    def poll(self, serving: Path | None) -> None:
        try:
            seen = (self.registry_dir / REGISTRY).stat().st_mtime
        except FileNotFoundError:
            return
        if seen == self._seen or not self._loading.acquire(blocking=False):
            return
        target = active_version_path(self.registry_dir)
        if target is None or target == serving:
            self._seen = seen
            self._loading.release()
            return
        threading.Thread(target=self._load, args=(target, seen), name="erp-model-reload", daemon=True).start()

    def _load(self, target: Path, seen: float) -> None:
        try:
            self.load(target)
        except Exception:
            logger.exception("could not load model version %s; still serving the previous one", target)
        finally:
            self._seen = seen
            self._loading.release()
