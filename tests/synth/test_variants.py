"""The 2D generator's variants: implants of a wider range of designs (only the implant changes, faint metal is drawn
faint), native knees with dense plates (only the plates change, the rim is a bright band) and native knees with a
filled notch (only the notch and the patella change; the notch is drawn brighter); a run's rendered cases say (and
cache) which variants they were drawn from."""

from __future__ import annotations

import dataclasses

import numpy as np

from model.scheme import load_scheme
from train.data.synthetic import render_store
from train.fitting.sources import _rendered
from train.synth import render_case, sample_case
from train.synth.shapes import build_shapes


def test_designs_change_the_implant_and_nothing_else():
    for seed in range(40, 46):
        plain, varied = sample_case(seed, phase="postop"), sample_case(seed, phase="postop", implant_designs=True)
        assert varied.acquisition == plain.acquisition
        assert (varied.anatomy.femur, varied.anatomy.tibia) == (plain.anatomy.femur, plain.anatomy.tibia)
        assert varied.anatomy.implant != plain.anatomy.implant
        assert plain.anatomy.implant.tray_density == plain.anatomy.implant.component_density == 1.0
    assert sample_case(40, phase="preop", implant_designs=True) == sample_case(40, phase="preop")


def test_the_designs_cover_faint_metal_and_other_shapes():
    implants = [sample_case(seed, phase="postop", implant_designs=True).anatomy.implant for seed in range(200)]
    assert 0.3 < np.mean([i.tray_density < 1 for i in implants]) < 0.7
    assert 0.2 < np.mean([i.component_density < 1 for i in implants]) < 0.6
    assert max(i.keel_width for i in implants) > 30 and max(i.flange_height_medial for i in implants) > 30
    assert all(i.poly_thickness > 0 for i in implants)


def test_a_faint_tray_is_drawn_fainter_than_cobalt_chrome():
    case = sample_case(7, phase="postop")
    implant = case.anatomy.implant

    def tray_value(density: float) -> float:
        faint = dataclasses.replace(case, anatomy=dataclasses.replace(
            case.anatomy, implant=dataclasses.replace(implant, tray_density=density)))
        img = render_case(faint, 0.5, clean=True)
        # the tray's centre in pixels: half-way between its upper (first 6) and lower (last 6) surface points
        tray = list(load_scheme("postop").curve("tibial_tray").indices)
        top, bottom = img.landmarks[tray[:6]].mean(0), img.landmarks[tray[6:]].mean(0)
        centre = np.round((top + bottom) / 2).astype(int)
        return float(img.image[centre[1], centre[0]]) * (1 if img.photometric == "MONOCHROME2" else -1)

    assert tray_value(0.15) < tray_value(1.0)


def test_rendered_cases_and_their_cache_say_which_designs(tmp_path):
    store = render_store({"postop": [3]}, 3.0, variants=("implant_designs",), progress=False)
    assert store[0].source.endswith(":implant_designs")
    cache = str(tmp_path / "cache.npz")
    plain, _ = _rendered("2d", {"preop": 0, "postop": 1}, 0, 3.0, 0.0, 1, cache, ["postop"], progress=False)
    varied, _ = _rendered("2d", {"preop": 0, "postop": 1}, 0, 3.0, 0.0, 1, cache, ["postop"], progress=False,
                          variants=["implant_designs"])  # the cache of the plain run is not reused
    assert not plain[0].source.endswith(":implant_designs") and varied[0].source.endswith(":implant_designs")
    assert not np.array_equal(plain[0].landmarks, varied[0].landmarks)


def test_dense_plates_change_the_plates_of_native_knees_and_nothing_else():
    for seed in range(50, 56):
        plain, dense = sample_case(seed, phase="preop"), sample_case(seed, phase="preop", dense_plates=True)
        assert dense.acquisition == plain.acquisition and dense.anatomy.patella == plain.anatomy.patella
        t0, t1 = plain.anatomy.tibia, dense.anatomy.tibia
        assert (t0.width, t0.tilt_deg, t0.medial_depth) == (t1.width, t1.tilt_deg, t1.medial_depth)
        assert t0.plate_density == 1.0 and t1.plate_density > 1.0 and t1.posterior_rim_offset > 0
    assert sample_case(50, phase="postop", dense_plates=True) == sample_case(50, phase="postop")


def test_a_flat_rim_is_a_straight_band_and_a_curved_one_follows_the_plateau():
    case = sample_case(51, phase="preop", dense_plates=True)

    def rim_top(flatness: float) -> np.ndarray:
        tibia = dataclasses.replace(case.anatomy.tibia, rim_flatness=flatness, rim_thickness=2.0)
        rim = build_shapes(dataclasses.replace(case.anatomy, tibia=tibia)).posterior_rim
        return rim[: len(rim) // 2, 1]

    assert np.ptp(rim_top(1.0)) < 1e-9
    assert np.ptp(rim_top(0.0)) > 1.0  # the plateau's concavity, millimetres deep


def test_a_filled_notch_changes_the_notch_and_patella_of_native_knees_and_nothing_else():
    for seed in range(60, 66):
        plain, filled = sample_case(seed, phase="preop"), sample_case(seed, phase="preop", filled_notch=True)
        assert filled.acquisition == plain.acquisition and filled.anatomy.tibia == plain.anatomy.tibia
        assert dataclasses.replace(filled.anatomy.femur, notch_fill=0.0) == plain.anatomy.femur
        assert dataclasses.replace(filled.anatomy.patella, density=1.0) == plain.anatomy.patella
        assert plain.anatomy.femur.notch_fill == 0.0 and filled.anatomy.femur.notch_fill > 0.0
        assert filled.anatomy.patella.density > 1.0
        both = sample_case(seed, phase="preop", filled_notch=True, dense_plates=True)
        assert (both.anatomy.femur.notch_fill, both.anatomy.tibia) == (
            filled.anatomy.femur.notch_fill, sample_case(seed, phase="preop", dense_plates=True).anatomy.tibia)
    assert sample_case(60, phase="postop", filled_notch=True) == sample_case(60, phase="postop")


def test_a_filled_notch_is_drawn_brighter_at_the_same_landmarks():
    case = sample_case(61, phase="preop", filled_notch=True)
    plain = sample_case(61, phase="preop")
    # the notch's fill alone: the denser patella of the variant put back to the usual one
    filled = dataclasses.replace(case, anatomy=dataclasses.replace(case.anatomy, patella=plain.anatomy.patella))
    images = [render_case(c, 0.5, clean=True) for c in (plain, filled)]
    np.testing.assert_array_equal(images[0].landmarks, images[1].landmarks)
    scheme, landmarks = load_scheme("preop"), images[0].landmarks
    notch = landmarks[list(scheme.curve("intercondylar_notch").indices)]
    # inside the notch (half-way from its middle point to the middle of the line between its edges) and in the tibia
    inside = (notch[len(notch) // 2] + (notch[0] + notch[-1]) / 2) / 2
    tibia = landmarks[list(scheme.roles["tibial_shaft_proximal"])].mean(0)
    (c0, r0), (c1, r1) = np.round([inside, tibia]).astype(int)
    sign = 1 if images[0].photometric == "MONOCHROME2" else -1
    notch_gain, tibia_gain = (sign * (int(images[1].image[r, c]) - int(images[0].image[r, c]))
                              for c, r in ((c0, r0), (c1, r1)))
    assert notch_gain > 0.05 * (1 << plain.acquisition.bits_stored) and abs(tibia_gain) < notch_gain / 5
