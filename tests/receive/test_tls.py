"""DICOM TLS against dcmtk: the node's listener with storescu/echoscu ``+tls``, and the node as a TLS client of
storescp ``+tls``. Certificates are made for each session with the openssl command line: a hospital CA with a
node (server) and a modality (client) certificate, and a rogue CA whose client certificate must be refused.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import pytest
from hostile_peers import closed_by_node, connect, held, logged
from receive_helpers import NODE_AE, SENDER_AE, Recorder, node_config, store_statuses
from receive_samples import image_dataset, write_part10

from dicomnode.config import NodeConfig
from dicomnode.dispatch.scu import StoreSession, echo
from dicomnode.receive import Receiver
from tests.conftest import free_port, require_tool


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_tool("/usr/bin/openssl"), *args], cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def _issue(ca: str, name: str, cwd: Path, *, server: bool) -> None:
    """A key and a certificate for ``name`` signed by ``ca`` (SAN: localhost and 127.0.0.1)."""
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=cwd)
    usage = "serverAuth" if server else "clientAuth"
    (cwd / f"{name}.ext").write_text(f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n"
                                     "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-sha256", "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-sha256", "-subj", f"/CN={ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)
    _issue("ca", "node", cwd, server=True)
    _issue("ca", "node-client", cwd, server=False)
    _issue("ca", "modality", cwd, server=False)
    _issue("rogue-ca", "intruder", cwd, server=False)
    return cwd


def _tls(pki: Path, **extra) -> dict:
    return {"enabled": True, "certificate": str(pki / "node.pem"), "private_key": str(pki / "node.key"),
            "ca_certificates": str(pki / "ca.pem"), **extra}


@pytest.fixture
def tls_node(tmp_path, pki):
    config = node_config(tmp_path / "spool", free_port(), node={"acse_timeout": 3}, tls=_tls(pki))
    receiver = Receiver(config, Recorder())
    receiver.start()
    yield receiver
    receiver.stop(grace_seconds=1)


def _storescu(dcmtk, port: int, files: list[Path], *tls: str) -> subprocess.CompletedProcess:
    command = [dcmtk["storescu"], "-d", "-aet", SENDER_AE, "-aec", NODE_AE, *tls, "127.0.0.1", str(port),
               *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _client_tls(pki: Path, name: str, ca: str = "ca") -> tuple[str, ...]:
    return ("+tls", str(pki / f"{name}.key"), str(pki / f"{name}.pem"), "+cf", str(pki / f"{ca}.pem"))


def test_storescu_over_tls_with_a_hospital_certificate_is_stored(dcmtk, tls_node, pki, tmp_path):
    sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    result = _storescu(dcmtk, tls_node.port, [sent], *_client_tls(pki, "modality"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert store_statuses(result) == [0x0000]


@pytest.mark.parametrize("client", ["rogue certificate", "no certificate", "plain TCP"])
def test_clients_without_a_valid_certificate_are_refused(dcmtk, tls_node, pki, tmp_path, client, caplog):
    caplog.set_level(logging.WARNING, "dicomnode")
    options = {"rogue certificate": _client_tls(pki, "intruder"),
               "no certificate": ("+tla", "+cf", str(pki / "ca.pem")),  # dcmtk's anonymous TLS client
               "plain TCP": ()}[client]
    sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    result = _storescu(dcmtk, tls_node.port, [sent], *options)
    assert result.returncode != 0 and store_statuses(result) == [], result.stdout + result.stderr
    assert logged(caplog, "closed: TLS handshake failed")
    # The legitimate modality still gets through.
    good = _storescu(dcmtk, tls_node.port, [sent], *_client_tls(pki, "modality"))
    assert store_statuses(good) == [0x0000]


def test_a_silent_tls_client_is_closed_at_the_deadline_without_blocking_others(dcmtk, tls_node, pki, tmp_path):
    with held([connect(tls_node.port)]) as (silent,):  # connects, never starts the handshake
        sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
        started = time.monotonic()
        good = _storescu(dcmtk, tls_node.port, [sent], *_client_tls(pki, "modality"))
        assert store_statuses(good) == [0x0000] and time.monotonic() - started < 5
        assert closed_by_node(silent, 5)


@pytest.fixture
def tls_storescp(dcmtk, pki, tmp_path):
    """dcmtk's storescp as a TLS destination that requires a client certificate from the hospital CA."""
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    process = subprocess.Popen([dcmtk["storescp"], "-aet", "DEST", "+tls", str(pki / "node.key"),
                                str(pki / "node.pem"), "+cf", str(pki / "ca.pem"), "-rc", "-od", str(out),
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            connect(port).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "storescp +tls did not start"
            time.sleep(0.1)
    yield port, out
    process.terminate()
    process.wait(10)


def _scu_config(tmp_path: Path, pki: Path, port: int, *, client: str = "node-client", host: str = "127.0.0.1",
                tls_peer: bool = True) -> NodeConfig:
    return NodeConfig.model_validate({
        "node": {"ae_title": NODE_AE, "acse_timeout": 5},
        "peers": [{"name": "dest", "ae_title": "DEST", "host": host, "port": port, "tls": tls_peer}],
        "storage": {"dir": str(tmp_path / "spool")},
        "tls": {"certificate": str(pki / f"{client}.pem"), "private_key": str(pki / f"{client}.key"),
                "ca_certificates": str(pki / "ca.pem")}})


def test_the_node_sends_over_tls_to_storescp(tls_storescp, pki, tmp_path):
    port, out = tls_storescp
    config = _scu_config(tmp_path, pki, port)
    peer = config.peers[0]
    assert echo(peer, config).ok
    sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    with StoreSession(peer, config, [sent]) as session:
        (result,) = session.send_all()
    assert result.ok and len(list(out.iterdir())) == 1


@pytest.mark.parametrize("case", ["plain TCP to a TLS peer", "client certificate from another CA",
                                  "peer certificate for another name"])
def test_the_node_refuses_or_is_refused_when_tls_does_not_check_out(tls_storescp, pki, tmp_path, case):
    port, _ = tls_storescp
    config = {
        "plain TCP to a TLS peer": lambda: _scu_config(tmp_path, pki, port, tls_peer=False),
        "client certificate from another CA": lambda: _scu_config(tmp_path, pki, port, client="intruder"),
        "peer certificate for another name": lambda: _scu_config(tmp_path, pki, port, host="127.0.0.2"),
    }[case]()
    result = echo(config.peers[0], config)
    assert not result.ok, result


def test_tls_configuration_errors_name_the_key(tmp_path, pki):
    from dicomnode.config import ConfigError, load_config

    cases = {
        "tls": {"enabled": True, "certificate": str(pki / "node.pem"), "private_key": str(pki / "node.key")},
        "tls.private_key": {"certificate": str(pki / "node.pem"), "private_key": str(tmp_path / "nope.key")},
    }
    import yaml

    for key, section in cases.items():
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"tls": section}))
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path, env={})
    mismatched = tmp_path / "config.yaml"
    mismatched.write_text(yaml.safe_dump({"tls": {"certificate": str(pki / "node.pem"),
                                                  "private_key": str(pki / "modality.key")}}))
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_config(mismatched, env={})
