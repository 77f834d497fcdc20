"""The ``http:`` section: on by default on loopback, a token required anywhere else (check-config refuses
it), the token never printed, and the status page's port apart from the DICOM port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import yaml

from dicomnode.config import ConfigError, NodeConfig, is_loopback, load_config
from dicomnode.web.identity import SHIPPED_WEIGHTS
from tests.conftest import free_port
from tests.node.nodeproc import child_env, node_config
from tests.node.test_cli import dicomnode

TOKEN = "s3cret-token-for-the-status-page"


def test_defaults_serve_the_page_on_loopback_without_a_token():
    http = NodeConfig().http
    assert (http.enabled, http.bind, http.port, http.token, http.show_patient_data) == (
        True, "127.0.0.1", 8080, None, False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.10", "node.example.org", "localhost.evil"])
def test_other_binds_need_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="set http.token"):
        NodeConfig.model_validate({"http": {"bind": host}})
    assert NodeConfig.model_validate({"http": {"bind": host, "token": TOKEN}}).http.token.get_secret_value() == TOKEN
    assert NodeConfig.model_validate({"http": {"bind": host, "enabled": False}}).http.token is None


def test_a_short_token_is_refused():
    with pytest.raises(ValueError, match="at least 16 characters"):
        NodeConfig.model_validate({"http": {"token": "short"}})


def test_the_page_needs_a_port_of_its_own():
    with pytest.raises(ValueError, match="http.port and node.port are both 11112"):
        NodeConfig.model_validate({"node": {"port": 11112}, "http": {"port": 11112}})


def test_check_config_refuses_a_public_bind_without_a_token(tmp_path):
    config = node_config(tmp_path, 11112, 11113, None, http={"bind": "0.0.0.0", "port": 8080})
    run = dicomnode("check-config", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 2
    assert "node.yaml: http: bind '0.0.0.0' is reachable from other machines: set http.token" in run.stderr


def test_check_config_hides_a_token_from_the_environment(tmp_path):
    config = node_config(tmp_path, 11112, 11113, None, http={"bind": "0.0.0.0", "port": 8080})
    env_config = load_config(config, env={"DICOMNODE__HTTP__TOKEN": TOKEN})
    assert env_config.http.token.get_secret_value() == TOKEN
    with pytest.raises(ConfigError, match=r"DICOMNODE__HTTP__TOKEN \(environment\): http.token"):
        load_config(config, env={"DICOMNODE__HTTP__TOKEN": "short"})
    data = yaml.safe_load(config.read_text())
    data["http"]["token"] = TOKEN
    config.write_text(yaml.safe_dump(data))
    run = dicomnode("check-config", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(run.stdout)["http"]["token"] == "**********" and TOKEN not in run.stdout


def test_the_page_reads_the_card_of_the_shipped_weights_without_torch():
    from model.weights import DEFAULT_WEIGHTS

    assert SHIPPED_WEIGHTS == DEFAULT_WEIGHTS and SHIPPED_WEIGHTS.exists()
    # In a fresh interpreter, as the node's main process: the shipped card is read and PyTorch stays unloaded.
    probe = ("import json, sys; from dicomnode.web.identity import model_card; c = model_card(None); "
             "print(json.dumps([c.version, c.problem, 'torch' in sys.modules]))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
    assert json.loads(run.stdout) == [card["version"], None, False]


@pytest.mark.parametrize("origin", ["kneealign.example.org", "https://", "https://host/status", "ftp://host"])
def test_public_origin_is_an_origin(origin):
    with pytest.raises(ValueError, match="is not an origin"):
        NodeConfig.model_validate({"http": {"public_origin": origin}})
    assert NodeConfig.model_validate({"http": {"public_origin": "HTTPS://Node.example:8443"}}).http.public_origin == (
        "https://node.example:8443")


def test_serve_stops_at_start_up_when_the_http_port_is_taken(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = node_config(tmp_path, free_port(), free_port(), None, http={"port": port})
        run = subprocess.run([sys.executable, "-m", "dicomnode", "serve", "--config", str(config)], cwd=tmp_path,
                             env=child_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"cannot start: cannot listen on 127.0.0.1:{port} (http): Address already in use" in run.stderr
    assert "worker" not in run.stderr, "no child process was started"
