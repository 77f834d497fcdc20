"""Pre-annotation: the node's readings written as annotations a manifest lists, and points an image does not show
("unseen") carried through loading, storing and training without ever being learned or measured against."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from model.inference import KneeAligner
from model.scheme import load_scheme
from model.shipped import SHIPPED_WEIGHTS
from model.weights import load_bundle
from train.cli import main
from train.data import AnnotationError, ManifestError, SampleStore, load_manifest, read_annotation
from train.data.sample import KneeSample
from train.data.stages import local_batch
from train.evaluate import resolve_data
from train.fitting.config import ManifestData, load_config
from train.fitting.sources import _manifest
from train.preannotate import inside_image, preannotate, split_for
from tests.train.test_data_annotations import _manifest_csv, _png, _points

PREOP = load_scheme("preop")
REFERENCE = list(PREOP.roles["reference"])


def _partial_annotation(tmp_path, unseen: list[int], beyond: list[int]):
    """A 300x400 PNG and a JSON annotation with the points ``beyond`` moved below the image, listing ``unseen``."""
    _png(tmp_path / "a.png")
    pts = _points(134)
    pts[beyond, 1] = 450.0
    (tmp_path / "a.json").write_text(json.dumps({"landmarks": pts.tolist(), "laterality": "L", "unseen": unseen}))
    return _manifest_csv(tmp_path, [["a.png", "a.json", "", "", ""]]), pts


def test_points_beyond_the_image_load_when_declared_unseen(tmp_path):
    shaft = [i for i in range(120, 134) if i not in REFERENCE]
    manifest, pts = _partial_annotation(tmp_path, shaft, shaft)
    (sample,) = load_manifest(manifest)
    assert sample.unseen == tuple(shaft) and np.array_equal(sample.landmarks, pts)
    # undeclared, the same points are an annotation error, as before
    manifest, _ = _partial_annotation(tmp_path, shaft[1:], shaft)
    with pytest.raises(AnnotationError, match="1 landmark.* outside the 300x400 image a.png"):
        load_manifest(manifest)


@pytest.mark.parametrize("unseen, message", [
    ([5, 200], r"'unseen' must be a list of point indices in 0\.\.133"),
    (["5"], r"'unseen' must be a list of point indices"),
    ([True], r"'unseen' must be a list of point indices"),
])
def test_unseen_indices_checked(tmp_path, unseen, message):
    manifest, _ = _partial_annotation(tmp_path, unseen, [])
    with pytest.raises(AnnotationError, match=message):
        load_manifest(manifest)


def test_plateau_corners_must_be_seen():
    image = np.zeros((400, 300), np.float32)
    with pytest.raises(ValueError, match="plateau corners .* must be seen"):
        KneeSample(image, _points(134), "L", "preop", None, "src", unseen=(REFERENCE[0],))


def test_unseen_points_not_trained_on_and_kept_by_the_store(tmp_path):
    image = np.random.default_rng(0).random((400, 300)).astype(np.float32)
    pts = _points(134)
    pts[REFERENCE] = [(100.0, 200.0), (200.0, 200.0)]  # a plateau 100 px wide: most points inside the frame
    spec = load_bundle(None).frame_spec
    seen = KneeSample(image, pts, "R", "preop", (0.2, 0.2), "seen")
    full = local_batch([seen], spec).weight[0]
    chosen = tuple(int(i) for i in np.flatnonzero(full.numpy())[2:5])  # three points inside the frame
    partial = KneeSample(image, pts, "R", "preop", (0.2, 0.2), "partial", unseen=chosen)
    part = local_batch([partial], spec).weight[0]
    assert part[list(chosen)].tolist() == [0.0, 0.0, 0.0]
    assert float(full.sum() - part.sum()) == 3.0
    loaded, _ = SampleStore.load(SampleStore([seen, partial]).save(tmp_path / "s.npz"))
    assert loaded[0].unseen == () and loaded[1].unseen == chosen


def test_evaluation_refuses_unseen_points(tmp_path):
    manifest, _ = _partial_annotation(tmp_path, [7], [])
    with pytest.raises(ManifestError, match=r"a\.json: point.* marked unseen \(1 such file"):
        resolve_data(str(manifest))


def test_several_manifests_train_together(tmp_path):
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        _png(folder / "a.png")
        (folder / "a.json").write_text(json.dumps({"landmarks": _points(134).tolist(), "laterality": "L"}))
        (folder / "m.csv").write_text(f"image,landmarks,split\na.png,a.json,{'train' if name == 'one' else 'val'}\n")
    data = ManifestData(source="manifest", manifest=[str(tmp_path / "one/m.csv"), str(tmp_path / "two/m.csv")])
    train, val = _manifest(data, ["preop"])
    assert (len(train), len(val)) == (1, 1)
    assert train[0].source.endswith("one/a.png") and val[0].source.endswith("two/a.png")


def test_split_is_stable_and_near_the_fraction():
    splits = [split_for(f"1.2.3.{i}", 0.2) for i in range(2000)]
    assert splits == [split_for(f"1.2.3.{i}", 0.2) for i in range(2000)]
    assert 0.17 < splits.count("val") / 2000 < 0.23


def test_inside_image_edges():
    pts = np.array([[-0.5, 0.0], [-0.6, 0.0], [299.5, 399.5], [299.6, 10.0]])
    assert inside_image(pts, (400, 300)).tolist() == [True, False, True, False]


def _relabelled(source: Path, target: Path, **attributes) -> Path:
    """A copy of the radiograph ``source`` with a new SOP Instance UID and ``attributes`` changed."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(target)
    return target


@pytest.fixture(scope="module")
def preannotated(tmp_path_factory):
    """Three radiographs of the 2D generator (one with its tags removed, so its side comes from the image; two named
    by UIDs that differ only after their last dot, as PACS exports name files), a blank one (no knee), a lateral
    view and a chest film (by their attributes: the node would not process them) and a file that is not DICOM,
    pre-annotated with the shipped weights."""
    root = tmp_path_factory.mktemp("pre")
    assert main(["synth", "--n", "3", "--out", str(root / "images"), "--seed", "5", "--phase", "preop"]) == 0
    truth = {}
    names = ["synth_s5_00000.dcm", "1.2.826.0.1.3680043.1", "1.2.826.0.1.3680043.2"]
    for p, name in zip(sorted((root / "images").glob("*.json")), names):
        truth[name] = json.loads(p.read_text())
        p.rename(root / p.name)  # unlabelled images: the ground truth leaves the folder
        p.with_suffix(".dcm").rename(root / "images" / name)
    first = root / "images" / names[0]
    ds = pydicom.dcmread(first)
    del ds.ImageLaterality
    if "Laterality" in ds:
        del ds.Laterality
    ds.save_as(first)
    _relabelled(first, root / "images" / "zz-blank.dcm", PixelData=np.zeros_like(ds.pixel_array).tobytes())
    _relabelled(first, root / "images" / "zz-lateral.dcm", ViewPosition="LL")
    _relabelled(first, root / "images" / "zz-chest.dcm", BodyPartExamined="CHEST")
    (root / "images" / "notes.txt").write_text("not a radiograph")
    assert main(["preannotate", "--images", str(root / "images"), "--out", str(root / "out"), "--all",
                 "--no-progress", "--device", "cpu"]) == 0
    return root, truth


def test_preannotation_is_the_node_reading(preannotated):
    root, truth = preannotated
    with (root / "out/manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    summary = json.loads((root / "out/summary.json").read_text())
    assert summary["read"] == 6 and summary["skipped"] == {
        "not DICOM": 1, "not read": 1, "not processed by the node: ViewPosition is not AP or PA": 1,
        "not processed by the node: BodyPartExamined is not KNEE": 1}
    assert summary["written"] == 3 and len(rows) == 3
    samples = load_manifest(root / "out/manifest.csv")
    assert sorted(r["landmarks"] for r in rows) == sorted(f"annotations/{name}.json" for name in truth)
    aligner = KneeAligner.load(None, device="cpu")
    for row, sample in zip(rows, samples):
        name = row["image"].split("/")[-1]
        gt = truth[name]
        assert (row["phase"], row["laterality"]) == (gt["phase"], gt["laterality"])
        assert row["split"] == ("flagged" if row["status"] == "low_confidence" else split_for(gt["sop_instance_uid"],
                                                                                               0.15))
        # the points are the node's reading of that file, and on its own generator they lie near the truth
        pred = aligner.predict(pydicom.dcmread(root / "images" / name))
        assert np.allclose(sample.landmarks, pred.landmarks, atol=0.01)
        plateau = np.linalg.norm(np.subtract(*np.asarray(gt["landmarks"])[REFERENCE]))
        error = np.linalg.norm(sample.landmarks - np.asarray(gt["landmarks"]), axis=1).mean() / plateau
        assert error < 0.03
        annotation = json.loads((root / "out" / row["landmarks"]).read_text())
        assert annotation["annotated_by"]["reviewed"] is False
        assert annotation["annotated_by"]["sha256"] == pred.model_sha256
    assert sum(r["split"] != "flagged" for r in rows) >= 2  # the 2D generator's knees are read confidently
    assert read_annotation(root / "out" / rows[0]["landmarks"]).laterality == rows[0]["laterality"]


class _StopsAtTheSecond:
    """The shipped weights' aligner, interrupted (as by Ctrl-C) when asked for its second reading."""

    def __init__(self):
        self.aligner, self.calls = KneeAligner.load(None, device="cpu"), 0

    def predict(self, ds):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self.aligner.predict(ds)


def test_any_view_reads_what_the_node_would_skip_and_an_interrupted_run_keeps_its_manifest(preannotated, tmp_path):
    root, _ = preannotated
    images = tmp_path / "images"
    images.mkdir()
    (images / "a-lateral.dcm").write_bytes((root / "images/zz-lateral.dcm").read_bytes())
    (images / "b-knee.dcm").write_bytes((root / "images/synth_s5_00000.dcm").read_bytes())
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        preannotate(_StopsAtTheSecond(), images, out, include_flagged=True, progress=False, any_view=True)
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    # the lateral copy was read (any view), its row is in the manifest the interrupted run left, and it loads
    assert [r["landmarks"] for r in rows] == ["annotations/a-lateral.dcm.json"]
    assert len(load_manifest(out / "manifest.csv")) == 1


def test_preannotate_refuses_a_bad_fraction_and_a_missing_folder(tmp_path, capsys):
    assert main(["preannotate", "--images", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["preannotate", "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--val-fraction", "1.5",
                 "--device", "cpu"]) == 2
    assert "validation fraction must be at least 0 and below 1, got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["finetune-manifest.yaml", "selftrain-manifest.yaml"])
def test_the_hospital_configs_start_from_the_shipped_weights(config):
    """The configs a hospital runs on its own images fine-tune the weights the node ships, not an older release."""
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "train" / "configs" / config)
    assert (root / cfg.init_weights).resolve() == SHIPPED_WEIGHTS.resolve()
