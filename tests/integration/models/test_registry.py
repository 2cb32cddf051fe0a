"""Model versions and backups on real files (tiny model folders)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from erp_chatbot.models.registry import ModelRegistry, RegistryError
from erp_chatbot.settings import ModelVersionSettings


def registry(tmp_path, **settings) -> ModelRegistry:
    options = {"min_free_disk_gb": 0, **settings}
    return ModelRegistry(tmp_path / "registry", tmp_path / "backups", ModelVersionSettings(**options))


@pytest.fixture
def model(tmp_path, tiny_lm_dir):
    return tiny_lm_dir


def test_first_import_is_active_and_later_ones_are_not(tmp_path, model):
    reg = registry(tmp_path)
    first = reg.import_folder(model)
    second = reg.import_folder(model, note="retrained")
    state = reg.state()
    assert (state.active, state.previous) == (first.id, None)
    assert second.note == "retrained" and second.files == first.files
    assert (reg.path(second.id) / "config.json").is_file()


def test_activate_and_rollback(tmp_path, model):
    reg = registry(tmp_path)
    v1, v2 = reg.import_folder(model).id, reg.import_folder(model).id
    assert (reg.activate(v2).active, reg.state().previous) == (v2, v1)
    assert reg.rollback().active == v1 and reg.state().previous == v2
    with pytest.raises(RegistryError, match="no model version 'v9'"):
        reg.activate("v9")


def test_retention_never_removes_the_active_or_the_previous(tmp_path, model):
    reg = registry(tmp_path, max_versions=3)
    v1, v2 = reg.import_folder(model).id, reg.import_folder(model).id
    reg.activate(v2)
    reg.activate(v1)  # v1 (the oldest) active, v2 previous
    v3, v4 = reg.import_folder(model).id, reg.import_folder(model).id
    assert set(reg.state().versions) == {v1, v2, v4} and v3 not in os.listdir(tmp_path / "registry" / "versions")
    assert reg.state().active == v1 and reg.state().previous == v2


def test_disk_threshold_refuses_with_a_clear_error(tmp_path, model):
    reg = registry(tmp_path, min_free_disk_gb=10**9)
    with pytest.raises(RegistryError, match=r"not enough disk space.*min_free_disk_gb"):
        reg.import_folder(model)
    assert reg.state().versions == {}


def test_killed_import_leaves_the_active_model_usable(tmp_path, model):
    reg = registry(tmp_path)
    active = reg.import_folder(model)
    big = tmp_path / "big-model"
    big.mkdir()
    (big / "config.json").write_text("{}")
    (big / "weights.bin").write_bytes(os.urandom(1 << 20) * 400)  # 400 MiB: copying takes a while
    script = (
        "import sys; from pathlib import Path; from erp_chatbot.models.registry import ModelRegistry;"
        "from erp_chatbot.settings import ModelVersionSettings;"
        f"ModelRegistry(Path({str(tmp_path / 'registry')!r}), Path({str(tmp_path / 'backups')!r}),"
        f"ModelVersionSettings(min_free_disk_gb=0)).import_folder(Path({str(big)!r}))"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    versions = tmp_path / "registry" / "versions"
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".") for p in versions.iterdir()):
        assert time.monotonic() < deadline and child.poll() is None, "the import never started copying"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    reopened = registry(tmp_path)
    assert reopened.state().active == active.id and list(reopened.state().versions) == [active.id]
    assert (reopened.active_path() / "config.json").is_file()
    assert sorted(p.name for p in versions.iterdir()) == [active.id]  # the half-copied folder is swept


def test_backups_are_verified_and_bounded(tmp_path, model):
    reg = registry(tmp_path, keep_backups=2, max_versions=2)
    v1, v2 = reg.import_folder(model).id, reg.import_folder(model).id
    reg.backup(v1)
    reg.backup(v2)
    v3 = reg.import_folder(model).id
    assert set(reg.state().versions) == {v1, v3}  # v2 was neither active nor previous
    reg.backup(v3)
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == [v2, v3]
    record = json.loads((tmp_path / "backups" / v2 / "version.json").read_text())
    assert record["files"] == reg.state().versions[v3].files


def test_corrupted_backup_is_refused(tmp_path, model):
    reg = registry(tmp_path, max_versions=2)
    v1 = reg.import_folder(model).id
    reg.backup(v1)
    weights = next((tmp_path / "backups" / v1).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    reg2 = registry(tmp_path, max_versions=2)
    reg2.import_folder(model)
    reg2.activate("v2")
    reg2.import_folder(model)
    reg2.activate("v3")
    assert reg2.prune() == ["v1"]
    with pytest.raises(RegistryError, match=r"corrupted: .*safetensors"):
        reg2.restore("v1")
    assert "v1" not in reg2.state().versions


def test_restore_brings_a_pruned_version_back(tmp_path, model):
    reg = registry(tmp_path, max_versions=2)
    v1 = reg.import_folder(model).id
    reg.backup(v1)
    reg.import_folder(model)
    reg.activate("v2")
    reg.import_folder(model)
    reg.activate("v3")
    assert reg.prune() == [v1]
    restored = reg.restore(v1)
    assert restored.id == v1 and (reg.path(v1) / "config.json").is_file()
    record = json.loads((tmp_path / "registry" / "registry.json").read_text())
    assert v1 in record["versions"]
