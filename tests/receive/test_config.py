"""Loading and validating config.yaml: the shipped file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dicomnode.config import ConfigError, NodeConfig, load_config
from tests.conftest import REPO

SHIPPED = REPO / "config.yaml"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _shipped_data() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def test_shipped_config_loads_with_paths_resolved_against_its_directory():
    config = load_config(SHIPPED, env={})
    assert config.node.ae_title == "KNEEALIGN" and config.node.port == 11112
    assert config.peer_by_name("pacs").ae_title == "ORTHANC"
    assert config.storage.dir == REPO / "var" / "spool"
    assert config.storage.instances_dir == REPO / "var" / "spool" / "instances"
    assert config.database.url == f"sqlite:///{REPO / 'var' / 'dicomnode.sqlite'}"
    assert config.processing.trigger == "instance" and config.processing.outputs == ["sr", "sc"]
    assert config.model.weights is None and config.source == SHIPPED


def test_relative_paths_follow_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    data = _shipped_data()
    data["model"]["weights"] = "weights/knee.safetensors"
    path = _write(tmp_path, data)
    monkeypatch.chdir(REPO)
    config = load_config(path, env={})
    assert config.storage.dir == tmp_path / "var" / "spool"
    assert config.model.weights == tmp_path / "weights" / "knee.safetensors"
    assert config.database.url == f"sqlite:///{tmp_path / 'var' / 'dicomnode.sqlite'}"


def test_non_sqlite_url_is_left_alone(tmp_path):
    url = "postgresql+psycopg://kneealign@db.example/kneealign"
    config = load_config(SHIPPED, env={"DICOMNODE__DATABASE__URL": url})
    assert config.database.url == url


def test_environment_overrides_are_typed():
    config = load_config(SHIPPED, env={
        "DICOMNODE__NODE__PORT": "11113",
        "DICOMNODE__PROCESSING__OUTPUTS": "[sr, sc, gsps]",
        "DICOMNODE__PEERS__0__SEND_RESULTS": "false",
        "DICOMNODE__MODEL__CONFIDENCE_THRESHOLD": "0.4",
        "DICOMNODE__LOGGING__LEVEL": "debug",
        "UNRELATED": "ignored",
    })
    assert config.node.port == 11113 and isinstance(config.node.port, int)
    assert config.processing.outputs == ["sr", "sc", "gsps"]
    assert config.peers[0].send_results is False
    assert config.model.confidence_threshold == pytest.approx(0.4)
    assert config.logging.level == "DEBUG"


@pytest.mark.parametrize(("env", "expected"), [
    ({"DICOMNODE__NODE__PORT": "70000"},
     "DICOMNODE__NODE__PORT (environment): node.port: Input should be less than 65536"),
    ({"DICOMNODE__PROCESSING__TRIGGER": "hourly"}, "processing.trigger: Input should be 'instance' or 'study'"),
    ({"DICOMNODE__PROCESSING__WORKERS": "0"}, "processing.workers: Input should be greater than or equal to 1"),
    ({"DICOMNODE__NODE__AE_TITLE": "A_TITLE_FAR_TOO_LONG"}, "node.ae_title: AE title"),
    ({"DICOMNODE__PEERS__0__AE_TITLE": "'    '"}, "peers.0.ae_title: AE title must not be empty"),
    ({"DICOMNODE__PEERS__0__AE_TITLE": "'BACK\\SLASH'"}, "peers.0.ae_title"),
    ({"DICOMNODE__NODE__PORTT": "1"}, "node.portt: unknown key"),
    ({"DICOMNODE__PEERS__5__PORT": "1"}, "DICOMNODE__PEERS__5__PORT: no list item '5'"),
])
def test_bad_environment_values_name_the_key(env, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(SHIPPED, env=env)
    assert expected in str(caught.value)


def test_bad_file_values_name_the_file_and_key(tmp_path):
    data = _shipped_data()
    data["node"]["port"] = 70000
    data["processing"]["outputs"] = ["sr", "pdf"]
    data["storage"]["min_free_mb"] = -1
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, data), env={})
    lines = str(caught.value).splitlines()
    assert "config.yaml: node.port: Input should be less than 65536" in lines
    assert any(line.startswith("config.yaml: processing.outputs.1: Input should be") for line in lines)
    assert any(line.startswith("config.yaml: storage.min_free_mb:") for line in lines)


def test_unknown_top_level_key_is_rejected(tmp_path):
    data = _shipped_data() | {"reciever": {"port": 1}}
    with pytest.raises(ConfigError, match=r"config.yaml: reciever: unknown key"):
        load_config(_write(tmp_path, data), env={})


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("node: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})


def test_duplicate_peer_names_rejected(tmp_path):
    data = _shipped_data()
    data["peers"].append(dict(data["peers"][0]))
    with pytest.raises(ConfigError, match="peers: .*unique.*pacs"):
        load_config(_write(tmp_path, data), env={})


def test_peer_lookup_by_ae_and_address(tmp_path):
    config = NodeConfig.model_validate({"peers": [
        {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242},
        {"name": "modalities", "ae_title": "DX1", "host": "10.1.2.3", "port": 104,
         "allowed_hosts": ["10.1.0.0/16", "localhost"]},
    ]}, context={"base_dir": tmp_path})
    assert config.peer_by_ae("ORTHANC", "127.0.0.1").name == "pacs"
    assert config.peer_by_ae("ORTHANC", "::ffff:127.0.0.1").name == "pacs"
    assert config.peer_by_ae("ORTHANC", "127.0.0.2") is None
    assert config.peer_by_ae("DX1", "10.1.200.7").name == "modalities"
    assert config.peer_by_ae("DX1", "127.0.0.1").name == "modalities"  # via the host name "localhost"
    assert config.peer_by_ae("DX1", "10.2.0.1") is None
    assert config.peers[0].allowed_hosts == ["127.0.0.1"]
    with pytest.raises(KeyError, match="known: pacs, modalities"):
        config.peer_by_name("nobody")


def test_measurement_panel_and_site_ranges(tmp_path):
    """Every measurement by default; a site may compute fewer and set reference ranges; bad ones name the key."""
    from model.measurements import MEASUREMENT_NAMES, ReferenceRange

    shipped = load_config(SHIPPED, env={}).processing
    assert set(shipped.measurements) | {"atfa_fts", "atfa_fnts"} == set(MEASUREMENT_NAMES)
    assert shipped.site_ranges() == {}
    data = _shipped_data()
    data["processing"].update(measurements=["mpta", "jsw_medial", "mpta"], reference_ranges={"mpta": [85, 90]})
    config = load_config(_write(tmp_path, data), env={})
    assert config.processing.measurements == ["mpta", "jsw_medial"]
    assert config.processing.site_ranges() == {"mpta": ReferenceRange(85.0, 90.0)}
    env = load_config(_write(tmp_path, data), env={"DICOMNODE__PROCESSING__REFERENCE_RANGES__MPTA__0": "84"})
    assert env.processing.site_ranges()["mpta"] == ReferenceRange(84.0, 90.0)
    for bad, expected in (({"measurements": ["hka"]}, "processing.measurements"),
                          ({"reference_ranges": {"mpta": [90, 85]}}, "low <= high"),
                          ({"reference_ranges": {"aldfa": [79, 83]}}, "leaves out"),
                          ({"reference_ranges": {"mpta": [85]}}, "processing.reference_ranges.mpta")):
        data = _shipped_data()
        data["processing"].update({"measurements": ["mpta"], **bad})
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
            load_config(_write(tmp_path, data), env={})


ROUTED_PEERS = [
    {"name": "dx-room", "ae_title": "DX1", "host": "10.0.0.5", "port": 104},
    {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.9", "port": 104, "send_results": False},
    {"name": "archive", "ae_title": "ARCH", "host": "10.0.0.10", "port": 104},
]


def test_without_routes_results_go_back_to_a_sender_that_wants_them(tmp_path):
    config = NodeConfig.model_validate({"peers": ROUTED_PEERS}, context={"base_dir": tmp_path})
    assert config.destinations("dx-room", "DX1") == ["dx-room"]
    assert config.destinations("pacs", "PACS") == [], "send_results: false"
    assert config.destinations(None, "STRANGER") == []


def test_routes_by_peer_and_calling_ae_first_match_wins(tmp_path):
    config = NodeConfig.model_validate({"peers": ROUTED_PEERS, "routes": [
        {"from_peers": ["dx-room"], "send_to": ["pacs", "sender", "pacs"]},
        {"from_calling_ae": ["PACS"], "send_to": ["archive"]},
        {"send_to": ["archive", "sender"]},
    ]}, context={"base_dir": tmp_path})
    assert config.destinations("dx-room", "DX1") == ["pacs", "dx-room"], "named peer and the sender, once each"
    assert config.destinations("pacs", "PACS ") == ["archive"], "by calling AE (padding ignored)"
    assert config.destinations("archive", "ARCH") == ["archive"], "catch-all, the sender only once"
    assert config.destinations(None, "X") == ["archive"], "an unknown sender has no 'sender' destination"


@pytest.mark.parametrize(("routes", "peers", "message"), [
    ([{"send_to": ["nowhere"]}], ROUTED_PEERS, r"routes\[0\] names peers that are not configured: nowhere"),
    ([{"from_peers": ["ghost"], "send_to": ["pacs"]}], ROUTED_PEERS, "not configured: ghost"),
    ([{"send_to": []}], ROUTED_PEERS, "send_to"),
    ([{"send_to": ["sender"]}], [*ROUTED_PEERS, {"name": "sender", "ae_title": "S", "host": "h", "port": 1}],
     "a peer is named 'sender'"),
])
def test_bad_routes_are_refused_with_the_reason(tmp_path, routes, peers, message):
    with pytest.raises(ValueError, match=message):
        NodeConfig.model_validate({"peers": peers, "routes": routes}, context={"base_dir": tmp_path})


@pytest.mark.parametrize("name", ["", "a b", "../x", "-lead", "x" * 65])
def test_node_name_must_be_a_plain_identifier(tmp_path, name):
    with pytest.raises(ValueError, match="node.name|name"):
        NodeConfig.model_validate({"node": {"name": name}}, context={"base_dir": tmp_path})
