"""The node's Secondary Capture on the wire: JPEG 2000 Lossless to a peer that accepts it, decompressed for a peer
that accepts only uncompressed data or is configured with ``compression: none``; pixel-identical either way."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless
from receive_helpers import node_config

from dicomnode.config import ConfigError, load_config
from dicomnode.dispatch.scu import StoreSession
from dicomnode.outputs.sc import build_sc
from tests.conftest import free_port
from tests.outputs.synthetic_knee import knee_case


@pytest.fixture(scope="module")
def sc_pair():
    """The SC as the node stores it (JPEG 2000 Lossless) and the same SC uncompressed, as a reference."""
    case = knee_case(laterality="R", atfa_deg=-4.0)
    return (build_sc(case.source, case.prediction),
            build_sc(case.source, case.prediction, transfer_syntax=ExplicitVRLittleEndian))


def _send(tmp_path, port: int, sc, compression: str = "lossless"):
    config = node_config(tmp_path / "spool", free_port(), extra_peers=[
        {"name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": port, "compression": compression}])
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    with StoreSession(config.peer_by_name("dest"), config, [path]) as session:
        [result] = session.send_all()
    assert result.ok, result.error
    return result


@pytest.mark.parametrize(("options", "compression", "expected"), [
    (("+xv",), "lossless", JPEG2000Lossless),          # storescp that prefers JPEG 2000 Lossless
    ((), "lossless", ExplicitVRLittleEndian),          # storescp's default: uncompressed only
    (("+xe",), "lossless", ExplicitVRLittleEndian),    # explicitly uncompressed only
    (("+xv",), "none", ExplicitVRLittleEndian),        # the peer could take JPEG 2000, the admin said no
])
def test_sc_reaches_storescp_pixel_identical(start_storescp, tmp_path, sc_pair, options, compression, expected):
    stored, plain = sc_pair
    port, out = start_storescp(*options)
    result = _send(tmp_path, port, stored, compression)
    (landed,) = [dcmread(p) for p in out.iterdir()]
    assert landed.SOPInstanceUID == result.sop_instance_uid == stored.SOPInstanceUID
    assert landed.file_meta.TransferSyntaxUID == expected
    assert landed.PhotometricInterpretation == ("YBR_RCT" if expected == JPEG2000Lossless else "RGB")
    np.testing.assert_array_equal(landed.pixel_array, plain.pixel_array)


def test_compression_is_checked_by_name(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("peers:\n  - {name: pacs, ae_title: PACS, host: 127.0.0.1, port: 104, compression: jpeg}\n")
    with pytest.raises(ConfigError, match=r"peers\.0\.compression"):
        load_config(path, env={})
    path.write_text("peers:\n  - {name: pacs, ae_title: PACS, host: 127.0.0.1, port: 104}\n")
    assert load_config(path, env={}).peers[0].compression == "lossless"
