"""The receiver against real senders: dcmtk's storescu/echoscu, and pynetdicom for payloads dcmtk will not send."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import JPEG2000Lossless, RLELossless
from pynetdicom import AE, _config
from receive_helpers import (
    NODE_AE,
    SENDER_AE,
    Recorder,
    node_config,
    partial_files,
    run_storescu,
    store_statuses,
    stored_files,
)
from receive_samples import compressed, dataset_bytes, image_dataset, text_sr_dataset, transfer_syntax_of, write_part10

from dicomnode.dispatch.responses import keep_responses
from dicomnode.receive import Receiver
from tests.conftest import free_port, require_tool


def _dcmtk_convert(tool: str, *options: str):
    def convert(source: Path, target: Path) -> None:
        subprocess.run([require_tool(f"/usr/bin/{tool}"), *options, str(source), str(target)], check=True,
                       capture_output=True, timeout=60)
    return convert


def _pydicom_convert(transfer_syntax: str):
    def convert(source: Path, target: Path) -> None:
        write_part10(compressed(dcmread(source), transfer_syntax), target)
    return convert


# (storescu option proposing the syntax, how to make a file in it)
ENCODINGS = {
    "jpeg2000-lossless": ("-xv", _pydicom_convert(JPEG2000Lossless)),
    "rle": ("-xr", _pydicom_convert(RLELossless)),
    "jpeg-lossless-sv1": ("-xs", _dcmtk_convert("dcmcjpeg", "+e1")),
    "jpeg-ls-lossless": ("-xt", _dcmtk_convert("dcmcjpls", "+el")),
    "deflated": ("-xd", _dcmtk_convert("dcmconv", "+td")),
}


def _assert_arrived_as_sent(receiver, recorder, sent: list[Path]) -> None:
    by_uid = {call.sop_instance_uid: call for call in recorder.calls}
    assert len(recorder.calls) == len(sent) == len(by_uid), "on_stored must be called exactly once per instance"
    for path in sent:
        header = dcmread(path, stop_before_pixels=True)
        call = by_uid[header.SOPInstanceUID]
        expected = receiver._spool.instances_dir / header.StudyInstanceUID / f"{header.SOPInstanceUID}.dcm"
        assert call.path == expected and expected.is_file()
        assert dataset_bytes(expected, inflate=True) == dataset_bytes(path, inflate=True), \
            f"{path.name}: dataset changed in transit"
        assert call.transfer_syntax == transfer_syntax_of(path) == transfer_syntax_of(expected)
        assert call.size_bytes == expected.stat().st_size
        assert (call.calling_ae, call.peer_name) == (SENDER_AE, "sender")
        assert (call.modality, call.body_part_examined, call.view_position) == (header.Modality, "KNEE", "AP")
        assert call.laterality == "R" and call.patient_id == "RCV-0001"
        assert "RCV-0001" not in repr(call)
    assert partial_files(receiver) == []


def test_uncompressed_dx_cr_ct_arrive_byte_identical(dcmtk, start_receiver, tmp_path):
    receiver, recorder = start_receiver()
    sent = [write_part10(image_dataset(modality, seed=i), tmp_path / f"{modality}.dcm")
            for i, modality in enumerate(("DX", "CR", "CT"))]
    result = run_storescu(dcmtk, receiver.port, sent)
    assert result.returncode == 0, result.stderr
    assert store_statuses(result) == [0x0000] * 3
    _assert_arrived_as_sent(receiver, recorder, sent)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_compressed_images_are_stored_as_received(encoding, dcmtk, start_receiver, tmp_path):
    option, convert = ENCODINGS[encoding]
    receiver, recorder = start_receiver()
    source = write_part10(image_dataset("DX", rows=96, columns=80), tmp_path / "plain.dcm")
    sent = tmp_path / f"{encoding}.dcm"
    convert(source, sent)
    assert transfer_syntax_of(sent).is_compressed or encoding == "deflated"
    result = run_storescu(dcmtk, receiver.port, [sent], option)
    assert result.returncode == 0, result.stderr
    _assert_arrived_as_sent(receiver, recorder, [sent])


def test_duplicate_is_replaced_and_reported_again(dcmtk, start_receiver, tmp_path):
    receiver, recorder = start_receiver()
    sent = write_part10(image_dataset("CR"), tmp_path / "cr.dcm")
    for _ in range(2):
        assert run_storescu(dcmtk, receiver.port, [sent]).returncode == 0
    assert len(recorder.calls) == 2 and recorder.calls[0].path == recorder.calls[1].path
    assert stored_files(receiver) == [recorder.calls[0].path]


def test_echoscu_succeeds(dcmtk, start_receiver):
    receiver, _ = start_receiver()
    result = subprocess.run([dcmtk["echoscu"], "-v", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1",
                             str(receiver.port)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


@pytest.mark.parametrize(("calling", "called", "peer_host", "diagnostic"), [
    ("INTRUDER", NODE_AE, "127.0.0.1", "Calling AE Title Not Recognized"),
    (SENDER_AE, "SOMEONEELSE", "127.0.0.1", "Called AE Title Not Recognized"),
    (SENDER_AE, NODE_AE, "192.0.2.10", "Calling AE Title Not Recognized"),  # right AE, wrong IP
])
def test_unknown_peers_are_rejected_at_association(calling, called, peer_host, diagnostic, dcmtk,
                                                   start_receiver, tmp_path, caplog):
    receiver, recorder = start_receiver(peer_host=peer_host)
    sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    with caplog.at_level(logging.WARNING, logger="dicomnode.receive"):
        result = run_storescu(dcmtk, receiver.port, [sent], calling=calling, called=called)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Association Rejected" in output and "Rejected Permanent" in output and diagnostic in output
    assert recorder.calls == [] and stored_files(receiver) == []
    rejections = [r.getMessage() for r in caplog.records if "REJECTED" in r.getMessage()]
    assert len(rejections) == 1 and "127.0.0.1" in rejections[0] and calling in rejections[0]
    assert "RCV-0001" not in caplog.text and "Receiver^Test" not in caplog.text


def test_below_disk_reserve_answers_out_of_resources(dcmtk, start_receiver, tmp_path):
    receiver, recorder = start_receiver(min_free_mb=10**9)
    sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    result = run_storescu(dcmtk, receiver.port, [sent])
    assert store_statuses(result) == [0xA700]
    assert recorder.calls == [] and stored_files(receiver) == [] and partial_files(receiver) == []


@pytest.mark.parametrize("make", [text_sr_dataset, lambda: _without_pixels(image_dataset("DX"))],
                         ids=["basic-text-sr", "dx-without-pixel-data"])
def test_non_image_objects_get_a_failure_status(make, dcmtk, start_receiver, tmp_path):
    receiver, recorder = start_receiver()
    sent = write_part10(make(), tmp_path / "object.dcm")
    result = run_storescu(dcmtk, receiver.port, [sent])
    assert store_statuses(result) == [0xC002]
    assert recorder.calls == [] and stored_files(receiver) == []


def _without_pixels(ds):
    del ds.PixelData
    return ds


def _send_raw(port: int, path: Path, monkeypatch) -> int:
    """C-STORE a Part 10 file with pynetdicom without parsing it (its dataset bytes go out untouched)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    meta = read_file_meta_info(path)
    ae = AE(ae_title=SENDER_AE)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=NODE_AE))
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


def _file_with_dataset(meta_source: Path, target: Path, dataset: bytes) -> Path:
    """A Part 10 file with ``meta_source``'s preamble and file meta followed by ``dataset``."""
    raw = meta_source.read_bytes()
    target.write_bytes(raw[: len(raw) - len(dataset_bytes(meta_source))] + dataset)
    return target


def test_unparseable_dataset_gets_cannot_understand(start_receiver, tmp_path, monkeypatch):
    receiver, recorder = start_receiver()
    good = write_part10(image_dataset("DX"), tmp_path / "good.dcm")
    # A plausible first tag (0008,0005 CS) with a length running far past the end, then noise.
    garbage = b"\x08\x00\x05\x00CS\xff\x7f" + bytes(range(256)) * 4
    status = _send_raw(receiver.port, _file_with_dataset(good, tmp_path / "garbage.dcm", garbage), monkeypatch)
    assert status == 0xC000
    assert recorder.calls == [] and stored_files(receiver) == [] and partial_files(receiver) == []


def test_dataset_not_matching_the_request_gets_a900(start_receiver, tmp_path, monkeypatch):
    receiver, recorder = start_receiver()
    announced = write_part10(image_dataset("DX"), tmp_path / "announced.dcm")
    other = write_part10(image_dataset("DX"), tmp_path / "other.dcm")  # another SOP Instance UID
    status = _send_raw(receiver.port, _file_with_dataset(announced, tmp_path / "mixed.dcm", dataset_bytes(other)),
                       monkeypatch)
    assert status == 0xA900
    assert recorder.calls == [] and stored_files(receiver) == []


def test_failure_to_queue_is_not_acknowledged_and_leaves_no_file(dcmtk, start_receiver, tmp_path):
    receiver, recorder = start_receiver()
    recorder.fail_with = RuntimeError("database is down")
    sent = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    result = run_storescu(dcmtk, receiver.port, [sent])
    assert store_statuses(result) == [0x0110]
    assert stored_files(receiver) == [] and partial_files(receiver) == []


def test_blocking_start_serves_until_stop(dcmtk, tmp_path):
    receiver = Receiver(node_config(tmp_path / "spool", free_port()), Recorder())
    server_thread = threading.Thread(target=receiver.start, kwargs={"block": True})
    server_thread.start()
    try:
        echo = [dcmtk["echoscu"], "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", str(receiver.port)]
        deadline = time.monotonic() + 10
        while subprocess.run(echo, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.05)
        assert server_thread.is_alive()
    finally:
        receiver.stop(grace_seconds=1)
    server_thread.join(timeout=10)
    assert not server_thread.is_alive()
    assert subprocess.run(echo, capture_output=True).returncode != 0  # the port is closed
