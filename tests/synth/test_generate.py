"""The folder generator behind ``knee-train synth``: files, ground truth, phases, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from train.synth import case_seed, generate, render_case, sample_case


def test_generate_writes_dicom_and_truth_and_each_file_is_reproducible_alone(tmp_path):
    paths = generate(3, tmp_path / "a", seed=5, phase="preop", progress=False)
    assert [p.name for p in paths] == [f"synth_s5_{i:05d}.dcm" for i in range(3)]
    for i, path in enumerate(paths):
        truth = json.loads(path.with_suffix(".json").read_text())
        ds = pydicom.dcmread(path)
        assert truth["phase"] == "preop" and len(truth["landmarks"]) == 134
        assert truth["sop_instance_uid"] == ds.SOPInstanceUID
        assert truth["seed"] == case_seed(5, i)
    # case 1 regenerated on its own, from its seed
    again = render_case(sample_case(case_seed(5, 1), phase="preop"))
    assert np.array_equal(pydicom.dcmread(paths[1]).pixel_array, again.image)
    # a second run gives byte-identical files
    second = generate(2, tmp_path / "b", seed=5, phase="preop", progress=False)
    assert second[0].read_bytes() == paths[0].read_bytes()
    assert second[1].with_suffix(".json").read_text() == paths[1].with_suffix(".json").read_text()


def test_seeds_differ_between_runs_and_cases():
    seeds = {case_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150


def test_different_images_of_one_seed_never_share_a_uid(tmp_path):
    """The same seed drawn as pre-op and post-op, from the hard distribution, with another implant design or
    without laterality tags is another image: a PACS keeps one instance per SOP Instance UID, so each must have
    its own UIDs (and its own study and series)."""
    runs = {"preop": generate(2, tmp_path / "pre", seed=11, phase="preop", progress=False),
            "postop": generate(2, tmp_path / "post", seed=11, phase="postop", progress=False),
            "hard": generate(2, tmp_path / "hard", seed=11, phase="postop", hard=True, progress=False),
            "designs": generate(2, tmp_path / "designs", seed=11, phase="postop", variants=["implant_designs"],
                                progress=False),
            "untagged": generate(2, tmp_path / "untagged", seed=11, phase="postop", drop_laterality=1.0,
                                 progress=False)}
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        uids = [str(pydicom.dcmread(p, stop_before_pixels=True)[keyword].value)
                for paths in runs.values() for p in paths]
        assert len(set(uids)) == len(uids), keyword
    # the same image regenerated keeps its UIDs
    again = generate(1, tmp_path / "again", seed=11, phase="postop", progress=False)
    assert pydicom.dcmread(again[0]).SOPInstanceUID == pydicom.dcmread(runs["postop"][0]).SOPInstanceUID


def test_generate_can_leave_out_laterality_tags(tmp_path):
    paths = generate(4, tmp_path, seed=1, phase="postop", drop_laterality=1.0, compress="rle", progress=False)
    for path in paths:
        ds = pydicom.dcmread(path)
        assert "ImageLaterality" not in ds and "Laterality" not in ds
        truth = json.loads(path.with_suffix(".json").read_text())
        assert truth["laterality"] in ("L", "R") and truth["laterality_tags"] is False
        assert len(truth["landmarks"]) == 181


def test_generate_can_draw_implants_of_other_designs(tmp_path):
    """``knee-train synth --variant implant_designs``: the same knees (angles) and fields, other implants (the 47
    implant points move; the femur too, a little, as it rests on an insert of another thickness); the projection
    renderer refuses the option."""
    plain = generate(2, tmp_path / "a", seed=3, phase="postop", progress=False)
    varied = generate(2, tmp_path / "b", seed=3, phase="postop", progress=False, variants=["implant_designs"])
    for a, b in zip(plain, varied):
        ta, tb = (json.loads(p.with_suffix(".json").read_text()) for p in (a, b))
        assert ta["atfa_fnts_deg"] == pytest.approx(tb["atfa_fnts_deg"], abs=0.05)  # landmark discretisation
        assert (ta["rows"], ta["columns"], ta["laterality"]) == (tb["rows"], tb["columns"], tb["laterality"])
        moved = np.linalg.norm(np.subtract(ta["landmarks"], tb["landmarks"]), axis=1)
        assert moved[134:].mean() > 5 * max(moved[:134].mean(), 1e-3)
        implants = [t["parameters"]["anatomy"]["implant"] for t in (ta, tb)]
        assert implants[0]["keel_width"] != implants[1]["keel_width"]
    with pytest.raises(ValueError, match="2d renderer only"):
        generate(1, tmp_path / "c", renderer="3d", variants=["implant_designs"], progress=False)


def test_the_command_line_names_the_variants_and_refuses_others(tmp_path, capsys):
    from train.cli import main

    assert main(["synth", "--n", "1", "--out", str(tmp_path), "--phase", "preop", "--variant", "dense_plates"]) == 0
    truth = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert truth["parameters"]["anatomy"]["tibia"]["plate_density"] > 1.0
    with pytest.raises(SystemExit):
        main(["synth", "--n", "1", "--out", str(tmp_path / "x"), "--variant", "metal_everywhere"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_case_written_again_alone_and_a_missed_projection_drawn_again(tmp_path):
    """``start`` writes case i of a run on its own, byte for byte; the projection renderer's post-op case 171 of
    seed 710000 misses a landmark level on its first draw, and the folder generator draws it again as the training
    data does (the miss stopped the whole run before)."""
    from train.xray3d import render_case as render_3d
    from train.xray3d import sample_case as sample_3d
    from train.xray3d.outlines import OutlineError

    full = generate(2, tmp_path / "a", seed=5, phase="preop", progress=False)
    (alone,) = generate(1, tmp_path / "b", seed=5, phase="preop", progress=False, start=1)
    assert alone.name == full[1].name and alone.read_bytes() == full[1].read_bytes()
    seed = case_seed(710000, 171)
    with pytest.raises(OutlineError):
        render_3d(sample_3d(seed, phase="postop"))
    (path,) = generate(1, tmp_path / "c", seed=710000, phase="postop", renderer="3d", progress=False, start=171)
    truth = json.loads(path.with_suffix(".json").read_text())
    assert path.name == "xray3d_s710000_00171.dcm" and truth["phase"] == "postop" and len(truth["landmarks"]) == 181
