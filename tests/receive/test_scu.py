"""The node's SCU (echo, StoreSession) against dcmtk's storescp and against our own Receiver."""

from __future__ import annotations

import time

import pytest
from pydicom import dcmread
from pydicom.uid import HTJ2KLossless, JPEG2000Lossless
from receive_helpers import NODE_AE, node_config
from receive_samples import compressed, dataset_bytes, image_dataset, text_sr_dataset, transfer_syntax_of, write_part10

from dicomnode.config import NodeConfig, PeerConfig
from dicomnode.dispatch.scu import DeliveryError, StoreSession, echo
from tests.conftest import free_port


def _config_with_dest(tmp_path, port: int, ae_title: str = "DEST") -> NodeConfig:
    return node_config(tmp_path / "spool", free_port(),
                       extra_peers=[{"name": "dest", "ae_title": ae_title, "host": "127.0.0.1", "port": port}])


def _received(out_dir) -> dict[str, object]:
    """storescp's output files by SOP Instance UID."""
    return {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): path for path in out_dir.iterdir()}


def test_echo_storescp_and_dead_port(start_storescp, tmp_path):
    port, _ = start_storescp()
    config = _config_with_dest(tmp_path, port)
    result = echo(config.peer_by_name("dest"), config)
    assert result.ok and result.status == 0x0000 and result.reason is None
    dead = PeerConfig(name="dead", ae_title="DEST", host="127.0.0.1", port=free_port())
    failed = echo(dead, config)
    assert not failed.ok and failed.status is None and failed.reason.startswith("connection-failed")


def test_store_session_delivers_files_and_datasets_over_one_association(start_storescp, tmp_path):
    port, out = start_storescp("+xa")  # accepts every transfer syntax
    config = _config_with_dest(tmp_path, port)
    files = [write_part10(image_dataset(m, seed=i), tmp_path / f"{m}.dcm") for i, m in enumerate(("DX", "CR"))]
    files.append(write_part10(compressed(image_dataset("DX"), JPEG2000Lossless), tmp_path / "j2k.dcm"))
    in_memory = image_dataset("CT")
    del in_memory.file_meta  # no transfer syntax: sent as Explicit VR Little Endian
    with StoreSession(config.peer_by_name("dest"), config, [*files, in_memory]) as session:
        assoc = session._assoc
        results = session.send_all()
        assert session._assoc is assoc and assoc.is_established  # one association for the batch
    assert [r.ok for r in results] == [True] * 4 and {r.status for r in results} == {0x0000}
    assert [r.source for r in results] == [*files, None]
    received = _received(out)
    assert set(received) == {r.sop_instance_uid for r in results}
    for path in files:
        landed = received[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert transfer_syntax_of(landed) == transfer_syntax_of(path)  # JPEG 2000 passed through as is
        assert dataset_bytes(landed) == dataset_bytes(path)


def test_compressed_file_is_decompressed_for_an_uncompressed_only_peer(start_storescp, tmp_path):
    port, out = start_storescp()  # storescp's default: uncompressed transfer syntaxes only
    config = _config_with_dest(tmp_path, port)
    original = image_dataset("DX", rows=72, columns=64)
    j2k = write_part10(compressed(image_dataset("DX", rows=72, columns=64), JPEG2000Lossless), tmp_path / "j2k.dcm")
    with StoreSession(config.peer_by_name("dest"), config, [j2k]) as session:
        [result] = session.send_all()
    assert result.ok, result.error
    landed = dcmread(_received(out)[result.sop_instance_uid])
    assert not landed.file_meta.TransferSyntaxUID.is_compressed
    assert (landed.pixel_array == original.pixel_array).all()  # lossless round trip


def test_per_instance_failure_status_is_returned_not_raised(start_receiver, tmp_path):
    receiver, recorder = start_receiver()
    config = _config_with_dest(tmp_path, receiver.port, ae_title=NODE_AE)
    config.node.ae_title = "SENDER"  # our calling AE must be a peer the receiver knows
    image = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    report = write_part10(text_sr_dataset(), tmp_path / "sr.dcm")
    with StoreSession(config.peer_by_name("dest"), config, [report, image]) as session:
        sr_result, image_result = session.send_all()
    assert not sr_result.ok and sr_result.status == 0xC002 and "not an image" in sr_result.error
    assert image_result.ok and [c.sop_instance_uid for c in recorder.calls] == [image_result.sop_instance_uid]


def test_store_session_to_a_dead_port_fails_fast(tmp_path):
    config = _config_with_dest(tmp_path, free_port())
    files = [write_part10(image_dataset("DX"), tmp_path / "dx.dcm")]
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught, StoreSession(config.peer_by_name("dest"), config, files):
        pass
    assert caught.value.reason == "connection-failed" and caught.value.peer == "dest"
    assert time.monotonic() - started < 5


def test_store_session_rejected_association_says_why(start_receiver, tmp_path):
    receiver, _ = start_receiver()
    config = _config_with_dest(tmp_path, receiver.port, ae_title=NODE_AE)  # calling AE KNEEALIGN: not a peer
    files = [write_part10(image_dataset("DX"), tmp_path / "dx.dcm")]
    with pytest.raises(DeliveryError) as caught, StoreSession(config.peer_by_name("dest"), config, files):
        pass
    assert caught.value.reason == "association-rejected"
    assert "Rejected Permanent, Service User, Calling AE title not recognised" in str(caught.value)


def test_htj2k_passes_through_store_session_and_receiver_unchanged(start_receiver, tmp_path):
    """dcmtk 3.6.7 cannot propose HTJ2K, so our SCU sends it. The receiver never decodes pixel data, so a JPEG 2000
    codestream labelled HTJ2K Lossless checks negotiation and storage as received (not the codec)."""
    receiver, recorder = start_receiver()
    config = _config_with_dest(tmp_path, receiver.port, ae_title=NODE_AE)
    config.node.ae_title = "SENDER"
    ds = compressed(image_dataset("DX", rows=72, columns=64), JPEG2000Lossless)
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    sent = write_part10(ds, tmp_path / "htj2k.dcm")
    with StoreSession(config.peer_by_name("dest"), config, [sent]) as session:
        [result] = session.send_all()
    assert result.ok
    [call] = recorder.calls
    assert call.transfer_syntax == HTJ2KLossless == transfer_syntax_of(call.path)
    assert dataset_bytes(call.path) == dataset_bytes(sent)
