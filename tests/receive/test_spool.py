"""The spool's durable write: fsync of the file and of the directories, atomic replace, clean-up of partial files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicomnode.config import StorageSection
from dicomnode.receive.spool import Spool, free_space_mb


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(StorageSection(dir=tmp_path / "spool", min_free_mb=1))
    spool.prepare()
    return spool


def test_write_fsyncs_file_then_directories_before_returning(spool, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:  # a spy: records what was synced, then really syncs it
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    written = spool.write(b"dataset bytes", "1.2.3", "1.2.3.4")
    assert written.path == spool.instances_dir / "1.2.3" / "1.2.3.4.dcm"
    assert written.path.read_bytes() == b"dataset bytes" and not written.replaced
    assert synced[0].startswith(str(spool.incoming_dir)) and synced[0].endswith(".part")  # the data itself
    assert str(spool.instances_dir) in synced  # the new study directory's entry
    assert synced[-1] == str(written.path.parent)  # the renamed file's entry, last
    assert list(spool.incoming_dir.iterdir()) == []


def test_rewrite_replaces_atomically_and_discard_keeps_an_acknowledged_copy(spool):
    first = spool.write(b"first", "1.2.3", "1.2.3.4")
    second = spool.write(b"second", "1.2.3", "1.2.3.4")
    assert second.replaced and second.path == first.path and second.path.read_bytes() == b"second"
    spool.discard(second)
    assert second.path.exists()  # an earlier acknowledged copy is never removed
    spool.discard(spool.write(b"new", "1.2.3", "1.2.3.5"))
    assert not (spool.instances_dir / "1.2.3" / "1.2.3.5.dcm").exists()


@pytest.mark.parametrize("uid", ["..", "../1.2", "1.2/3", "", "1" * 65, "1.2\x00"])
def test_unsafe_uids_never_become_paths(spool, uid):
    with pytest.raises(ValueError):
        spool.write(b"x", uid, "1.2.3")
    with pytest.raises(ValueError):
        spool.write(b"x", "1.2.3", uid)


def test_prepare_removes_partial_files_only(spool):
    (spool.incoming_dir / "abc.part").write_bytes(b"half")
    kept = spool.write(b"done", "1.2", "1.2.1")
    assert spool.prepare() == 1
    assert list(spool.incoming_dir.iterdir()) == [] and kept.path.exists()


def test_free_space_check_against_the_reserve(spool):
    free = free_space_mb(spool.storage.dir)
    assert free > 0
    assert spool.has_room(1024)
    spool.storage.min_free_mb = int(free) + 10
    assert not spool.has_room(0)
    assert free_space_mb(spool.storage.dir / "not" / "yet" / "created") == pytest.approx(free, rel=0.01)


def test_durable_writes_create_their_directories_and_leave_no_temporary_file(tmp_path, monkeypatch):
    from dicomnode import durable

    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(durable.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                         real_fsync(fd)))
    target = tmp_path / "outputs" / "1.2.3" / "4.5.6" / "sr.dcm"
    assert durable.write_durably(b"first", target) is False
    assert target.read_bytes() == b"first" and durable.write_durably(b"second", target) is True
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["sr.dcm"], "no temporary file left"
    for new_dir in (tmp_path / "outputs", tmp_path / "outputs" / "1.2.3", target.parent):
        assert str(new_dir.parent) in synced, f"the entry of {new_dir.name} made durable in its parent"
