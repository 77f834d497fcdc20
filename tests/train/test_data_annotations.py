"""Annotation files and manifests: .pts and JSON readers, scheme checks with errors that name the file,
PNG and DICOM images, and the sample type they produce."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from model.scheme import load_scheme
from train.data import (
    AnnotationError,
    ManifestError,
    SampleStore,
    coarsen,
    load_manifest,
    read_annotation,
    read_directory,
    read_pts,
    write_pts,
)
from train.data.sample import KneeSample


def _points(n: int, w: int = 300, h: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform([5, 5], [w - 6, h - 6], size=(n, 2))


def _png(path, w: int = 300, h: int = 400, dark_bone: bool = False):
    img = (np.linspace(0, 60000, w * h).reshape(h, w)).astype(np.uint16)
    if dark_bone:
        img = 65535 - img
    cv2.imwrite(str(path), img)
    return path


def test_pts_round_trip(tmp_path):
    pts = _points(134)
    read = read_pts(write_pts(tmp_path / "a.pts", pts))
    assert read.shape == (134, 2)
    assert np.allclose(read, pts, atol=1e-3)


def test_pts_bonefinder_text(tmp_path):
    path = tmp_path / "b.pts"
    path.write_text("version: 1\nn_points:  3\n{\n1 2\n3.5 4.25\n\n5e1 6\n}\n")
    assert read_pts(path).tolist() == [[1, 2], [3.5, 4.25], [50, 6]]


@pytest.mark.parametrize("text, message", [
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "n_points: 3 but the list has 2"),
    ("version: 1\nn_points: 2\n1 2\n3 4\n", "no '{'"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", "no '}'"),
    ("version: 1\n{\n1 2 3\n}\n", "point 1"),
    ("version: 1\n{\n1 x\n}\n", "point 1"),
])
def test_pts_malformed_names_file(tmp_path, text, message):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as err:
        read_pts(path)
    assert "bad.pts" in str(err.value)


def _manifest_csv(tmp_path, rows):
    lines = ["image,landmarks,laterality,phase,pixel_spacing_mm"]
    lines += [",".join(r) for r in rows]
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_png_pts_and_json(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", dark_bone=True)
    pre, post = _points(134), _points(181, seed=1)
    write_pts(tmp_path / "a.pts", pre)
    (tmp_path / "b.json").write_text(json.dumps({"landmarks": post.tolist(), "laterality": "R", "phase": "postop"}))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "images:\n"
        "  - {image: a.png, landmarks: a.pts, laterality: L, pixel_spacing_mm: 0.2}\n"
        "  - {image: b.png, landmarks: b.json, photometric: MONOCHROME1, pixel_spacing_mm: '0.15 0.16'}\n")
    a, b = load_manifest(manifest)
    assert (a.phase, a.laterality, a.pixel_spacing_mm) == ("preop", "L", (0.2, 0.2))  # phase from the count
    assert (b.phase, b.laterality, b.pixel_spacing_mm) == ("postop", "R", (0.15, 0.16))
    assert a.image.dtype == np.float32 and a.image.shape == (400, 300)
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0
    # MONOCHROME1 is inverted: the dark-bone PNG gives the same normalised image as the bright-bone one
    assert np.allclose(a.image, b.image, atol=1e-3)
    assert np.allclose(a.landmarks, pre, atol=1e-3) and np.allclose(b.landmarks, post)
    assert b.is_right and np.allclose(b.reference, post[list(load_scheme("postop").roles["reference"])])


@pytest.mark.parametrize("n, phase, message", [
    (133, "", r"a\.pts: 133 landmarks match no scheme; expected 134 \(preop\) or 181 \(postop\)"),
    (134, "postop", r"a\.pts: 134 landmarks, but the postop scheme kneealign-postop@1\.0 has 181"),
])
def test_manifest_count_errors_name_the_annotation(tmp_path, n, phase, message):
    _png(tmp_path / "a.png")
    write_pts(tmp_path / "a.pts", _points(n))
    with pytest.raises(AnnotationError, match=message):
        load_manifest(_manifest_csv(tmp_path, [["a.png", "a.pts", "L", phase, ""]]))


def test_json_annotation_count_checked_too(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "a.json").write_text(json.dumps({"landmarks": _points(180).tolist(), "phase": "postop"}))
    with pytest.raises(AnnotationError, match=r"a\.json: 180 landmarks, but the postop scheme"):
        load_manifest(_manifest_csv(tmp_path, [["a.png", "a.json", "L", "", ""]]))


def test_manifest_errors_name_the_line(tmp_path):
    _png(tmp_path / "a.png")
    write_pts(tmp_path / "a.pts", _points(134))
    with pytest.raises(ManifestError, match="manifest.csv line 3: laterality 'X' is not L or R"):
        load_manifest(_manifest_csv(tmp_path, [["a.png", "a.pts", "L", "", ""], ["a.png", "a.pts", "X", "", ""]]))
    with pytest.raises(ManifestError, match="manifest.csv line 2: laterality unknown for a.png"):
        load_manifest(_manifest_csv(tmp_path, [["a.png", "a.pts", "", "", ""]]))
    with pytest.raises(ManifestError, match="line 2: image not found"):
        load_manifest(_manifest_csv(tmp_path, [["missing.png", "a.pts", "L", "", ""]]))
    with pytest.raises(AnnotationError, match="nothing.pts: annotation file not found"):
        load_manifest(_manifest_csv(tmp_path, [["a.png", "nothing.pts", "L", "", ""]]))


def test_landmarks_outside_image_rejected(tmp_path):
    _png(tmp_path / "a.png")
    pts = _points(134)
    pts[7] = (1000.0, 10.0)
    write_pts(tmp_path / "a.pts", pts)
    with pytest.raises(AnnotationError, match="a.pts: 1 landmark.* outside the 300x400 image a.png, e.g. point 7"):
        load_manifest(_manifest_csv(tmp_path, [["a.png", "a.pts", "L", "", ""]]))


def _dicom(path, laterality: str | None, photometric: str = "MONOCHROME1"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = 400, 300
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [0.14, 0.14]
    if laterality:
        ds.ImageLaterality = laterality
    ds.PixelData = (np.arange(400 * 300).reshape(400, 300) % 4096).astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_directory_of_dicom_with_ground_truth(tmp_path):
    _dicom(tmp_path / "case1.dcm", "R")
    pts = _points(181)
    (tmp_path / "case1.json").write_text(json.dumps({
        "landmarks": pts.tolist(), "phase": "postop", "atfa_fts_deg": 4.5, "atfa_fnts_deg": 5.25}))
    entries = read_directory(tmp_path)
    assert [e.image.name for e in entries] == ["case1.dcm"]
    from train.data import load_entry

    s = load_entry(entries[0])
    assert (s.laterality, s.phase, s.pixel_spacing_mm) == ("R", "postop", (0.14, 0.14))  # laterality from the tag
    assert (s.atfa_fts_deg, s.atfa_fnts_deg) == (4.5, 5.25)
    ds = pydicom.dcmread(tmp_path / "case1.dcm")
    assert s.image.shape == (ds.Rows, ds.Columns)

    _dicom(tmp_path / "lonely.dcm", "L")
    with pytest.raises(ManifestError, match="lonely.dcm: no ground-truth file lonely.json"):
        read_directory(tmp_path)


def test_read_annotation_rejects_unknown_suffix(tmp_path):
    (tmp_path / "a.txt").write_text("1 2")
    with pytest.raises(AnnotationError, match=r"a\.txt: unknown annotation format '\.txt'"):
        read_annotation(tmp_path / "a.txt")


def _sample(phase="preop", laterality="L", w=300, h=400) -> KneeSample:
    img = np.random.default_rng(3).random((h, w)).astype(np.float32)
    n = load_scheme(phase).n_points
    return KneeSample(img, _points(n, w, h), laterality, phase, (0.2, 0.2), "test")


def test_sample_rejects_wrong_count():
    with pytest.raises(ValueError, match="src: 10 landmarks, but scheme kneealign-preop@1.0 has 134"):
        KneeSample(np.zeros((10, 10), np.float32), np.zeros((10, 2)), "L", "preop", None, "src")


def test_left_view_mirrors_right_knees():
    s = _sample(laterality="R")
    img, pts = s.left_view()
    assert np.array_equal(img, s.image[:, ::-1])
    # a landmark keeps its pixel value after mirroring
    i = 17
    x, y = pts[i]
    xi, yi = round(x), round(y)
    ox, oy = round(s.landmarks[i][0]), round(s.landmarks[i][1])
    assert img[yi, xi] == s.image[oy, ox]


def test_coarsen_keeps_landmarks_on_their_pixels():
    s = _sample()
    s.image[:] = 0
    s.image[200:204, 100:104] = 1.0  # a 4 px block; a landmark at its centre
    s.landmarks[0] = (101.5, 201.5)
    c = coarsen(s, spacing_mm=0.4)  # factor 2
    assert c.image.shape == (200, 150)
    assert c.pixel_spacing_mm == pytest.approx((0.4, 0.4))
    assert c.landmarks[0] == pytest.approx((50.5, 100.5))
    assert c.image[100:102, 50:52].min() == pytest.approx(1.0)
    assert coarsen(s, spacing_mm=0.1) is s  # never upsamples


def test_store_round_trip(tmp_path):
    a, b = _sample("preop"), _sample("postop", "R")
    store = SampleStore([a, b])
    assert store.indices("postop") == [1]
    assert np.abs(store[0].image - a.image).max() <= 1 / 65535
    path = store.save(tmp_path / "s.npz", {"k": 1})
    loaded, desc = SampleStore.load(path)
    assert desc == {"k": 1} and len(loaded) == 2
    assert loaded[1].laterality == "R" and loaded[1].pixel_spacing_mm == (0.2, 0.2)
    assert np.array_equal(loaded[1].landmarks, b.landmarks)
    head, tail = SampleStore.concat(store, loaded).split(3)
    assert (len(head), len(tail)) == (3, 1)
