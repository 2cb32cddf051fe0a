"""Model versions: import, list, activate, roll back, retain, back up and restore.

Layout under ``registry_dir``::

    registry.json            which version is active, the previous one, and every version's record
    versions/<id>/           one HF folder per version (sha256 of every file in the record)

``backup_dir/<id>/`` holds copies with the same record. Every change writes the new files first and
``registry.json`` last (write to a temporary file, fsync, rename), so a crash at any step leaves
the registry and the active model usable; unfinished folders start with a dot and are swept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from erp_chatbot.settings import ModelVersionSettings

REGISTRY = "registry.json"
RECORD = "version.json"


class RegistryError(RuntimeError):
    """A registry operation was refused; the message says why and what to do."""


@dataclass
class Version:
    id: str
    created_at: float
    source: str
    kind: str
    files: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass
class RegistryState:
    active: str | None = None
    previous: str | None = None
    versions: dict[str, Version] = field(default_factory=dict)


class ModelRegistry:
    def __init__(self, root: Path, backup_dir: Path, settings: ModelVersionSettings) -> None:
        self.root, self.backup_dir, self.settings = root, backup_dir, settings
        (root / "versions").mkdir(parents=True, exist_ok=True)
        self._sweep(root / "versions")

    # ---------------------------------------------------------------- reading

    def state(self) -> RegistryState:
        path = self.root / REGISTRY
        if not path.is_file():
            return RegistryState()
        data = json.loads(path.read_text())
        versions = {k: Version(**v) for k, v in data["versions"].items()}
        return RegistryState(data["active"], data["previous"], versions)

    def path(self, version_id: str) -> Path:
        if version_id not in self.state().versions:
            raise RegistryError(f"no model version {version_id!r}; see: erp-chatbot models list")
        return self.root / "versions" / version_id

    def active_path(self) -> Path:
        active = self.state().active
        if active is None:
            raise RegistryError("no active model version; import one with: erp-chatbot models import")
        return self.path(active)

    # ---------------------------------------------------------------- changing

    def import_folder(self, source: Path, kind: str = "hf", note: str = "") -> Version:
        """Copy an HF folder in as a new version (inactive, unless it is the first)."""
        if not (source / "config.json").is_file():
            raise RegistryError(f"{source} is not a Hugging Face model folder (config.json missing)")
        self._ensure_space(_size(source))
        staging = Path(tempfile.mkdtemp(dir=self.root / "versions", prefix="."))
        shutil.copytree(source, staging, dirs_exist_ok=True)
        return self._register(staging, str(source), kind, note)

    def import_gguf(self, gguf: Path, note: str = "") -> Version:
        """Convert a GGUF file into a new version."""
        from erp_chatbot.models.demo import gguf_to_hf

        if not gguf.is_file():
            raise RegistryError(f"{gguf} does not exist")
        self._ensure_space(gguf.stat().st_size * 4)  # dequantised to float32
        staging = Path(tempfile.mkdtemp(dir=self.root / "versions", prefix="."))
        gguf_to_hf(gguf, staging)
        return self._register(staging, str(gguf), "gguf", note)

    def activate(self, version_id: str) -> RegistryState:
        state = self.state()
        self.path(version_id)
        if state.active != version_id:
            state.previous, state.active = state.active, version_id
            self._write(state)
        return state

    def rollback(self) -> RegistryState:
        state = self.state()
        if state.previous is None:
            raise RegistryError("there is no previous version to roll back to")
        state.active, state.previous = state.previous, state.active
        self._write(state)
        return state

    def prune(self, protect: frozenset[str] = frozenset()) -> list[str]:
        """Remove the oldest versions beyond ``max_versions``, never the active or the previous."""
        state = self.state()
        keep = {state.active, state.previous, *protect}
        ordered = sorted(state.versions.values(), key=lambda v: v.created_at)
        removable = [v.id for v in ordered if v.id not in keep]
        excess = len(ordered) - self.settings.max_versions
        removed = removable[: max(excess, 0)]
        return self._remove(state, removed)

    # ---------------------------------------------------------------- backups

    def backup(self, version_id: str) -> Path:
        """Copy a version to the backup folder, verify it, keep the newest ``keep_backups``."""
        record = self.state().versions.get(version_id) or self._missing(version_id)
        target = self.backup_dir / version_id
        staging = self.backup_dir / f".{version_id}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.path(version_id), staging)
        (staging / RECORD).write_text(json.dumps(asdict(record), indent=2))
        self._verify(staging, record, what=f"backup of {version_id}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        backups = sorted(
            (p for p in self.backup_dir.iterdir() if (p / RECORD).is_file()),
            key=lambda p: json.loads((p / RECORD).read_text())["created_at"],
        )
        for old in backups[: -self.settings.keep_backups]:
            shutil.rmtree(old)
        return target

    def restore(self, version_id: str) -> Version:
        """Bring a backup back as a version, refusing it if any file differs from its record."""
        source = self.backup_dir / version_id
        if not (source / RECORD).is_file():
            raise RegistryError(f"no backup of {version_id!r} in {self.backup_dir}")
        record = Version(**json.loads((source / RECORD).read_text()))
        self._verify(source, record, what=f"backup of {version_id}")
        if version_id in self.state().versions:
            raise RegistryError(f"version {version_id!r} already exists; nothing to restore")
        staging = Path(tempfile.mkdtemp(dir=self.root / "versions", prefix="."))
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(RECORD))
        return self._register(staging, record.source, record.kind, record.note, version_id)

    # ---------------------------------------------------------------- internals

    def _register(self, staging: Path, source: str, kind: str, note: str, version_id: str | None = None) -> Version:
        state = self.state()
        version_id = version_id or _new_id(state)
        record = Version(version_id, time.time(), source, kind, _checksums(staging), note)
        staging.rename(self.root / "versions" / version_id)
        state.versions[version_id] = record
        if state.active is None:
            state.active = version_id
        self._write(state)
        self.prune(protect=frozenset({version_id}))
        return record

    def _ensure_space(self, needed_bytes: int) -> None:
        threshold = self.settings.min_free_disk_gb * 2**30
        if shutil.disk_usage(self.root).free - needed_bytes >= threshold:
            return
        self.prune()
        free = shutil.disk_usage(self.root).free
        if free - needed_bytes < threshold:
            raise RegistryError(
                f"not enough disk space in {self.root}: {free / 2**30:.1f} GiB free, "
                f"{needed_bytes / 2**30:.1f} GiB needed and {self.settings.min_free_disk_gb} GiB must stay "
                "free (model_versions.min_free_disk_gb); remove versions or lower the threshold"
            )

    def _remove(self, state: RegistryState, version_ids: list[str]) -> list[str]:
        if not version_ids:
            return []
        for version_id in version_ids:
            del state.versions[version_id]
        self._write(state)  # the registry forgets them first: a crash leaves only stray folders
        for version_id in version_ids:
            shutil.rmtree(self.root / "versions" / version_id, ignore_errors=True)
        return version_ids

    def _write(self, state: RegistryState) -> None:
        data = {
            "active": state.active,
            "previous": state.previous,
            "versions": {k: asdict(v) for k, v in state.versions.items()},
        }
        tmp = self.root / f".{REGISTRY}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.root / REGISTRY)

    @staticmethod
    def _verify(folder: Path, record: Version, what: str) -> None:
        actual = _checksums(folder, skip=(RECORD,))
        if actual != record.files:
            bad = sorted(set(actual.items()) ^ set(record.files.items()))
            names = sorted({name for name, _ in bad})
            raise RegistryError(f"{what} is corrupted: {', '.join(names)} differ from the recorded checksums")

    def _sweep(self, versions: Path) -> None:
        known = set(self.state().versions)
        for child in versions.iterdir():
            if child.name.startswith(".") or child.name not in known:
                shutil.rmtree(child, ignore_errors=True)

    def _missing(self, version_id: str) -> Version:
        raise RegistryError(f"no model version {version_id!r}; see: erp-chatbot models list")


def active_version_path(root: Path) -> Path | None:
    """The active version's folder, read without touching anything (None when there is none)."""
    path = root / REGISTRY
    if not path.is_file():
        return None
    active = json.loads(path.read_text()).get("active")
    return root / "versions" / active if active else None


def _new_id(state: RegistryState) -> str:
    numbers = [int(v[1:]) for v in state.versions if v.startswith("v") and v[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


def _checksums(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    from erp_chatbot.knowledge.index import sha256_file

    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
