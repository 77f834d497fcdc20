"""Configuration foot-guns: values of the right type that would make a silently misbehaving node are refused (or
warned about) by name, in the file and in environment overrides, and by ``dicomnode check-config``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicomnode.config import ConfigError, load_config
from tests.node.nodeproc import child_env


def _base(tmp_path: Path) -> dict:
    return {"node": {"ae_title": "KNEEALIGN", "port": 11112},
            "peers": [{"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104}],
            "storage": {"dir": str(tmp_path / "spool")},
            "database": {"url": f"sqlite:///{tmp_path / 'node.sqlite'}"}}


def _load(tmp_path: Path, change, env: dict[str, str] | None = None):
    data = _base(tmp_path)
    change(data)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, env=env or {})


def _set(section: str, key: str, value):
    def change(data):
        data.setdefault(section, {})[key] = value
    return change


def _peer(key: str, value):
    def change(data):
        data["peers"][0][key] = value
    return change


@pytest.mark.parametrize("change, key, words", [
    (_set("node", "port", True), "node.port", "boolean"),
    (_set("processing", "workers", True), "processing.workers", "boolean"),
    (_set("storage", "min_free_mb", False), "storage.min_free_mb", "boolean"),
    (_set("database", "url", "sqlite:///:memory:"), "database.url", "in-memory"),
    (_set("database", "url", "sqlite://"), "database.url", "in-memory"),
    (_set("storage", "dir", "/"), "storage.dir", "system directory"),
    (_set("storage", "dir", "/etc"), "storage.dir", "system directory"),
    (_peer("allowed_hosts", ["0.0.0.0/0"]), "peers.0.allowed_hosts", "every address"),
    (_peer("allowed_hosts", ["::/0"]), "peers.0.allowed_hosts", "every address"),
    (_peer("allowed_hosts", []), "peers.0.allowed_hosts", "empty list"),
    (_set("model", "confidence_threshold", 0), "model.confidence_threshold", "LOW CONFIDENCE"),
    (_set("processing", "workers", 1000), "processing.workers", "at most"),
    (_set("node", "max_associations", 100000), "node.max_associations", "at most"),
    (_set("node", "acse_timeout", 10**9), "node.acse_timeout", "at most"),
    (_set("node", "network_timeout", float("inf")), "node.network_timeout", "finite"),
    (_set("node", "dimse_timeout", 0), "node.dimse_timeout", "greater than 0"),
    (_set("processing", "job_time_limit_seconds", float("nan")), "processing.job_time_limit_seconds", "finite"),
    (_set("processing", "job_memory_mb", 10), "processing.job_memory_mb", "greater than or equal"),
])
def test_foot_guns_are_refused_naming_the_key(tmp_path, change, key, words):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, change)
    message = str(refused.value)
    assert f"config.yaml: {key}:" in message and words in message, message


def test_a_spool_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="storage.dir: .* exists and is not a directory"):
        _load(tmp_path, _set("storage", "dir", str(tmp_path / "file")))


def test_an_environment_override_is_named_as_the_origin(tmp_path):
    with pytest.raises(ConfigError, match=r"DICOMNODE__NODE__PORT \(environment\): node.port: true is a boolean"):
        _load(tmp_path, lambda data: None, env={"DICOMNODE__NODE__PORT": "true"})


@pytest.mark.parametrize("change, key", [
    (_set("logging", "level", "DEBUG"), "logging.level"),
    (_set("storage", "min_free_mb", 0), "storage.min_free_mb"),
    (_peer("allowed_hosts", ["10.0.0.0/8"]), "peers.0.allowed_hosts"),
    (_set("node", "port", 104), "node.port"),
    (_set("node", "max_associations", 500), "node.max_associations"),
    (_set("node", "network_timeout", 3600), "node.network_timeout"),
])
def test_risky_but_legal_values_are_warned_about(tmp_path, change, key):
    config = _load(tmp_path, change)
    assert any(warning.startswith(f"{key}: ") for warning in config.warnings), config.warnings


def test_a_sane_configuration_has_no_findings(tmp_path):
    assert _load(tmp_path, lambda data: None).warnings == []


def test_check_config_prints_warnings_and_refuses_errors(tmp_path):
    data = _base(tmp_path)
    data["logging"] = {"level": "DEBUG"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dicomnode", "check-config", "--config", str(path)],
                              check=False, capture_output=True, text=True, cwd=tmp_path, env=child_env(), timeout=120)

    warned = check()
    assert warned.returncode == 0 and "# WARNING logging.level: DEBUG" in warned.stdout
    data["node"]["port"] = True
    path.write_text(yaml.safe_dump(data))
    refused = check()
    assert refused.returncode == 2 and "node.port: true is a boolean" in refused.stderr
