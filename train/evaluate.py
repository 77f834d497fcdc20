"""``knee-train evaluate``: run the full inference (``model.inference.KneeAligner``) on annotated images and
measure it as Hu et al. 2025 did (Table 1: rP2P/rP2C; Table 2: aTFA agreement by FTS and FNTS), plus phase and
laterality accuracy and the low-confidence flag.

Data: ``synthetic:test`` / ``synthetic:hard`` / ``synthetic:hard-open`` (the 2D generator's fixed held-out seeds of
``train.data.splits``, rendered in memory at each case's own pixel spacing), the same sets of the projection
renderer (``xray3d:test`` / ``xray3d:hard`` / ``xray3d:hard-open``), ``mixed:hard`` (both renderers' hard sets),
a folder of DICOM files with ground-truth JSON beside them, or a manifest. ``synthetic:val`` / ``xray3d:val`` are
the validation seeds (never trained on, never held out): the place to tune a check before it meets a held-out set.
The reference angles are those of the ground-truth landmarks at the paper's fixed shaft levels (its "manual"
measurements); when the prediction used other (adaptive) levels, the ground truth at those same levels is recorded
too, so that the change of definition and the landmark error can be told apart; and the landmark error is split
between the axes (``error_sources``: femoral and tibial axis directions, the notch midpoint's offset) to show which
landmarks carry it; and between the offset each landmark has in every image and the scatter around it
(``train.landmark_bias``: what a few annotated images of a new source could correct, and what they could not).

When the predicted phase differs from the true one, landmark errors are taken over the points the two schemes
share (the 134 bone points; post-op adds the implant outlines after them). A case for which inference gives no
result at all (``UnsupportedImage``, e.g. no knee found) is kept as a failure: counted, and left out of the tables.

The measurement panel beyond the aTFA (JLCA, aLDFA, MPTA, joint space widths, component angles) has its own
ground truth and tables (``train.panel_eval``), under ``panel`` in the summary.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.alignment import MIN_LEVEL, compute_alignment
from model.inference import KneeAligner
from model.preprocess import UnsupportedImage
from model.scheme import LandmarkScheme, load_scheme
from model.vocabulary import PHASE_NAMES, PREOP
from train.data.annotations import read_annotation
from train.data.manifest import ManifestEntry, ManifestError, load_entry, read_directory, read_manifest
from train.data.sample import KneeSample
from train.data.splits import N_TEST_PER_PHASE, held_out_seeds, validation_seeds
from train.data.synthetic import RENDERER_NAMES, render_samples, renderer_version, synthetic_sample
from train.landmark_bias import MIN_CASES, decompose, frame_errors
from train.metrics import (
    ICC_FORM,
    accuracy,
    agreement,
    error_sources,
    relative_p2c,
    relative_p2p,
    summarize,
    summarize_error_sources,
)
from train.panel_eval import case_panel, summarize_panel

# Synthetic evaluation sets: name -> (held-out seeds of train.data.splits, hard distribution, collimator removed).
# "hard-open" is the hard set with its collimator opened: rotation, noise, MONOCHROME1 and long stems without the
# shafts cut short, so that their effect can be told apart from the crop's. Each renderer has them all.
# "val" draws the validation seeds instead (as many per phase as a held-out set).
SYNTHETIC_SETS = {"test": ("test", False, False), "hard": ("hard", True, False), "hard-open": ("hard", True, True),
                  "val": ("val", False, False)}
RENDERER_PREFIXES = {"synthetic": ("2d",), "xray3d": ("3d",), "mixed": ("2d", "3d")}


@dataclass
class CaseResult:
    index: int
    source: str
    phase: str
    laterality: str
    atfa_fts: float  # from the ground-truth landmarks
    atfa_fnts: float
    phase_pred: str | None = None  # None: no result (see ``error``)
    laterality_pred: str | None = None
    laterality_probability: float | None = None  # the image's probability of the side it reads (KneePrediction)
    phase_probability: float | None = None  # the implant probability
    rp2p: float = math.nan
    rp2c: float = math.nan
    atfa_fts_pred: float = math.nan
    atfa_fnts_pred: float = math.nan
    confidence: float = 0.0
    low_confidence: bool = True
    time_ms: float = math.nan
    atfa_fts_exact: float | None = None  # the generator's own angle, when known
    atfa_fnts_exact: float | None = None
    axes_visible: bool | None = None  # every axis landmark in the exposed field (known for synthetic data)
    exposed_femur: float | None = None  # plateau widths of femoral shaft in the exposed field (ground truth)
    exposed_tibia: float | None = None
    atfa_axes: float | None = None  # the projection renderer's angle between the projected 3D shaft axes
    levels_pred: dict | None = None  # shaft levels the prediction's axes used
    atfa_fts_same_levels: float = math.nan  # ground-truth landmarks measured at the prediction's levels
    atfa_fnts_same_levels: float = math.nan
    error_sources: dict | None = None  # train.metrics.error_sources, when phase and laterality are right
    frame_errors: list | None = field(default=None, repr=False)  # train.landmark_bias.frame_errors, same condition
    warnings: list = field(default_factory=list)
    consistency: dict | None = None  # angle differences of the mirrored and rotated copies (KneePrediction)
    panel: dict = field(default_factory=dict)  # measurement -> truth, prediction, status (train.panel_eval)
    error: str | None = None  # why inference gave no result
    landmarks_pred: list = field(default_factory=list, repr=False)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class EvalData:
    """What to evaluate: an iterator over samples in order and a way to load case ``i`` again (for overlays)."""

    name: str
    n: int
    samples: Callable[[], Iterator[KneeSample]]
    reload: Callable[[int], KneeSample]
    generators: dict[str, str] = field(default_factory=dict)  # a synthetic set's renderers: name -> version


def _entries_data(name: str, entries: list[ManifestEntry]) -> EvalData:
    """Annotated images to evaluate; refused before any is read when an annotation marks points unseen (the
    reference angles need every point), so that a long evaluation does not stop half-way."""
    partial = [e for e in entries if read_annotation(e.landmarks).unseen]
    if partial:
        raise ManifestError(f"{partial[0].landmarks}: point(s) marked unseen ({len(partial)} such file(s) in "
                            f"{name}); the reference angles need every point annotated (leave such images out of "
                            "the evaluation set)")
    return EvalData(name, len(entries), lambda: (load_entry(e) for e in entries), lambda i: load_entry(entries[i]))


def _set_seeds(name: str, phase: str, n: int | None) -> list[int]:
    """The seeds of synthetic set ``name`` for ``phase``: the first ``n`` (default: all) of a held-out set, or as
    many validation seeds."""
    if name == "val":
        return validation_seeds(phase, n or N_TEST_PER_PHASE)
    return held_out_seeds(name, phase, n or N_TEST_PER_PHASE)


def resolve_data(spec: str, n_per_phase: int | None = None, workers: int = 1, progress: bool = True,
                 phases: tuple[str, ...] = PHASE_NAMES) -> EvalData:
    """``synthetic:<set>``, ``xray3d:<set>``, ``mixed:<set>``, a directory of DICOM + ground-truth JSON, or a
    manifest file. ``progress``: a progress bar while synthetic cases render. ``phases``: a synthetic set's cases
    of these phases only (a directory or manifest is taken as it is)."""
    prefix, _, name = spec.partition(":")
    if prefix in RENDERER_PREFIXES and name:
        if name not in SYNTHETIC_SETS:
            raise ValueError(f"unknown synthetic set {spec!r}; use one of "
                             + ", ".join(f"{p}:{k}" for p in RENDERER_PREFIXES for k in SYNTHETIC_SETS))
        unknown = set(phases) - set(PHASE_NAMES)
        if unknown or not phases:
            raise ValueError(f"unknown phase {sorted(unknown)}; use {' or '.join(PHASE_NAMES)}")
        seeds_of, hard, open_field = SYNTHETIC_SETS[name]
        jobs = [(seed, phase, hard, None, open_field, renderer)
                for renderer in RENDERER_PREFIXES[prefix] for phase in PHASE_NAMES if phase in phases
                for seed in _set_seeds(seeds_of, phase, n_per_phase)]
        return EvalData(spec, len(jobs), lambda: render_samples(jobs, workers, desc=spec, progress=progress),
                        lambda i: synthetic_sample(*jobs[i]),
                        {RENDERER_NAMES[r]: renderer_version(r) for r in RENDERER_PREFIXES[prefix]})
    if tuple(phases) != PHASE_NAMES:
        raise ValueError("a phase can be chosen for synthetic sets only; a directory or manifest is evaluated whole")
    path = Path(spec)
    if path.is_dir():
        return _entries_data(spec, read_directory(path))
    if path.exists():
        return _entries_data(spec, read_manifest(path))
    raise FileNotFoundError(f"evaluation data not found: {spec}")


def comparable(pred: np.ndarray, pred_phase: str, gt: np.ndarray, gt_phase: str
               ) -> tuple[np.ndarray, np.ndarray, LandmarkScheme]:
    """Predicted and true landmarks on a common scheme: the shared pre-op points when the phases differ."""
    if pred_phase == gt_phase:
        return pred, gt, load_scheme(gt_phase)
    pre = load_scheme(PREOP)
    return pred[:pre.n_points], gt[:pre.n_points], pre


def axes_visible(sample: KneeSample) -> bool | None:
    """Whether every landmark that fixes the axes lies in the exposed field; None when the data do not say."""
    visible = sample.meta.get("visible")
    if visible is None:
        return None
    return bool(np.all(np.asarray(visible)[sample.scheme.axis_indices]))


def exposed_extent(sample: KneeSample, bone: str) -> float | None:
    """How far (plateau widths from the joint) the ``bone``'s shaft is shown: the most distant shaft level whose two
    cortex points are in the exposed field, counting on from the joint without a gap; 0 when none. None when the
    data do not say."""
    visible = sample.meta.get("visible")
    if visible is None or bone not in sample.scheme.shaft_levels:
        return None
    rows = sorted(sample.scheme.shaft_levels[bone])
    extent = 0.0
    for level, med, lat in rows:
        if not (visible[med] and visible[lat]):
            break
        extent = level
    return extent


def evaluate_case(aligner: KneeAligner, sample: KneeSample, index: int, use_tags: bool) -> CaseResult:
    truth = compute_alignment(sample.landmarks, sample.scheme, sample.laterality)
    case = CaseResult(index=index, source=sample.source, phase=sample.phase, laterality=sample.laterality,
                      atfa_fts=truth.atfa_fts_deg, atfa_fnts=truth.atfa_fnts_deg,
                      atfa_fts_exact=sample.atfa_fts_deg, atfa_fnts_exact=sample.atfa_fnts_deg,
                      axes_visible=axes_visible(sample), exposed_femur=exposed_extent(sample, "femur"),
                      exposed_tibia=exposed_extent(sample, "tibia"), atfa_axes=sample.meta.get("atfa_axes_deg"))
    t0 = time.perf_counter()
    try:
        pred = aligner.predict_image(sample.image, sample.laterality if use_tags else None, sample.pixel_spacing_mm)
    except UnsupportedImage as exc:
        case.error = str(exc)
        return case
    case.time_ms = (time.perf_counter() - t0) * 1000
    p, g, scheme = comparable(pred.landmarks, pred.phase, sample.landmarks, sample.phase)
    case.phase_pred, case.laterality_pred = pred.phase, pred.laterality
    case.laterality_probability, case.phase_probability = pred.laterality_probability, pred.phase_probability
    case.rp2p, case.rp2c = relative_p2p(p, g, scheme), relative_p2c(p, g, scheme)
    case.atfa_fts_pred, case.atfa_fnts_pred = pred.alignment.atfa_fts_deg, pred.alignment.atfa_fnts_deg
    case.confidence, case.low_confidence = pred.confidence, pred.low_confidence
    case.warnings = list(pred.warnings)
    case.consistency = dict(pred.consistency) or None
    levels = pred.alignment.levels
    case.levels_pred = {"femur": list(levels.femur), "tibia": list(levels.tibia)}
    if pred.phase == sample.phase:  # the truth at the levels the prediction used
        same = compute_alignment(sample.landmarks, sample.scheme, sample.laterality, levels=levels)
        case.atfa_fts_same_levels, case.atfa_fnts_same_levels = same.atfa_fts_deg, same.atfa_fnts_deg
        if pred.laterality == sample.laterality:  # the prediction's own axes (image pixels, at the same levels)
            corners = sample.landmarks[list(sample.scheme.roles["reference"])]
            case.error_sources = error_sources(pred.alignment, same, sample.laterality, corners)
            case.frame_errors = np.round(frame_errors(pred.landmarks, sample.landmarks, corners), 3).tolist()
    case.panel = case_panel(sample, pred)
    case.landmarks_pred = np.round(pred.landmarks, 3).tolist()
    return case


def _phase_block(cases: list[CaseResult]) -> dict:
    return {
        "n": len(cases),
        "rp2p": summarize(np.array([c.rp2p for c in cases])).as_dict(),
        "rp2c": summarize(np.array([c.rp2c for c in cases])).as_dict(),
        "fts": agreement(np.array([c.atfa_fts_pred for c in cases]), np.array([c.atfa_fts for c in cases])).as_dict(),
        "fnts": agreement(np.array([c.atfa_fnts_pred for c in cases]),
                          np.array([c.atfa_fnts for c in cases])).as_dict(),
    }


def summarize_cases(cases: list[CaseResult]) -> dict:
    """Every table of the report as plain data (JSON-ready).

    Per phase: tables over the cases with a result (``all``) and over those not flagged low-confidence
    (``confident``); ``n_no_result`` cases failed outright. Phase and laterality accuracy count a failure as wrong.
    """
    out: dict = {"n_cases": len(cases), "icc_form": ICC_FORM, "phases": {}}
    for phase in PHASE_NAMES:
        sel = [c for c in cases if c.phase == phase]
        if not sel:
            continue
        done = [c for c in sel if not c.failed]
        confident = [c for c in done if not c.low_confidence]
        block = {"n": len(sel), "n_no_result": len(sel) - len(done),
                 "all": _phase_block(done), "confident": _phase_block(confident),
                 "n_low_confidence": len(done) - len(confident),
                 "fraction_not_reported": (len(sel) - len(confident)) / len(sel)}
        known = [c for c in done if c.axes_visible is not None]
        if known:  # how the low-confidence flag matches cases whose axis levels were really not exposed
            hidden = [c for c in known if not c.axes_visible]
            shown = [c for c in known if c.axes_visible]
            block["flag_vs_axes_visible"] = {
                "hidden": len(hidden), "hidden_flagged": sum(c.low_confidence for c in hidden),
                "visible": len(shown), "visible_flagged": sum(c.low_confidence for c in shown)}
        adapted = [c for c in confident if c.levels_pred and not math.isnan(c.atfa_fnts_same_levels)]
        if adapted:  # landmark error alone, and how much the adaptive levels moved the reference angle
            block["confident_vs_truth_at_same_levels"] = {
                "n": len(adapted),
                "n_not_fixed_levels": sum(c.levels_pred != {"femur": [1.3, 0.8], "tibia": [0.8, 1.3]} for c in adapted),
                "fnts": agreement(np.array([c.atfa_fnts_pred for c in adapted]),
                                  np.array([c.atfa_fnts_same_levels for c in adapted])).as_dict(),
                "fts": agreement(np.array([c.atfa_fts_pred for c in adapted]),
                                 np.array([c.atfa_fts_same_levels for c in adapted])).as_dict(),
                "level_shift_fnts_mad_deg": float(np.mean([abs(c.atfa_fnts_same_levels - c.atfa_fnts)
                                                           for c in adapted])),
                "level_shift_fts_mad_deg": float(np.mean([abs(c.atfa_fts_same_levels - c.atfa_fts) for c in adapted])),
            }
            block["confident_error_by_far_level"] = error_by_far_level(adapted)
        placed = [c.frame_errors for c in done if c.frame_errors]
        if len(placed) >= MIN_CASES:  # how much of the landmark error is the same offset in every image
            block["landmark_offsets"] = decompose(np.array(placed), load_scheme(phase).point_names)
        sourced = [c.error_sources for c in confident if c.error_sources]
        if sourced:  # which axis, and how much of it the notch, carries the landmark error
            block["confident_error_sources"] = summarize_error_sources(sourced)
        shown = [c for c in sel if c.exposed_femur is not None and c.exposed_tibia is not None]
        if shown:  # how many are measured among the cases with at least 0.6 plateau widths of both shafts in the field
            # (the denominator) and among those with the node's minimum of each shaft
            for key, need in (("measured_with_0_6_shaft", {"femur": 0.6, "tibia": 0.6}),
                              ("measured_with_minimum_shaft", MIN_LEVEL)):
                enough = [c for c in shown if c.exposed_femur >= need["femur"] - 1e-6
                          and c.exposed_tibia >= need["tibia"] - 1e-6]
                block[key] = {"n": len(enough), "confident": sum(not c.failed and not c.low_confidence for c in enough),
                              "levels": dict(need)}
        axes = [c for c in done if c.atfa_axes is not None]
        if axes:  # the projection renderer: the landmark definitions against its projected 3D shaft axes
            block["truth_vs_projected_axes_mad_deg"] = {
                "fts": float(np.mean([abs(c.atfa_fts - c.atfa_axes) for c in axes])),
                "fnts": float(np.mean([abs(c.atfa_fnts - c.atfa_axes) for c in axes]))}
        exact = [c for c in sel if c.atfa_fnts_exact is not None]
        if exact:
            block["landmark_vs_exact_angle_max_abs_deg"] = {
                "fts": float(max(abs(c.atfa_fts - c.atfa_fts_exact) for c in exact)),
                "fnts": float(max(abs(c.atfa_fnts - c.atfa_fnts_exact) for c in exact)),
            }
        out["phases"][phase] = block
    out["n_no_result"] = sum(c.failed for c in cases)
    out["phase_accuracy"] = accuracy([c.phase_pred for c in cases], [c.phase for c in cases])
    out["laterality_accuracy"] = accuracy([c.laterality_pred for c in cases], [c.laterality for c in cases])
    out["n_phase_errors"] = sum(c.phase_pred != c.phase for c in cases)
    out["n_tag_contradicted"] = sum(any("contradicted" in w for w in c.warnings) for c in cases)
    out["n_low_confidence_by_reason"] = _reasons(cases)
    out["n_laterality_errors"] = sum(c.laterality_pred != c.laterality for c in cases)
    times = np.array([c.time_ms for c in cases if not c.failed])
    out["time_ms"] = {"median": float(np.median(times)), "p95": float(np.percentile(times, 95))} if len(times) else {}
    failures = [{"source": c.source, "error": c.error} for c in cases if c.failed]
    out["failures"] = failures[:20]
    out["panel"] = summarize_panel(cases)
    return out


def error_by_far_level(cases: list[CaseResult]) -> dict[str, dict[str, dict]]:
    """Per bone and far shaft level of the prediction's axes: n and the FNTS / FTS MAD against the ground truth at
    the same levels (the landmark error alone). A shorter axis turns more for the same landmark error: the tibial axis
    from 0.8 to 1.0 plateau widths is 0.2 long, from 0.8 to 1.3 0.5."""
    out: dict[str, dict[str, dict]] = {}
    for bone, far in (("femur", 0), ("tibia", 1)):
        groups: dict[float, list[CaseResult]] = {}
        for c in cases:
            groups.setdefault(round(c.levels_pred[bone][far], 1), []).append(c)
        out[bone] = {f"{level:.1f}": {
            "n": len(group),
            "fnts_mad": float(np.mean([abs(c.atfa_fnts_pred - c.atfa_fnts_same_levels) for c in group])),
            "fts_mad": float(np.mean([abs(c.atfa_fts_pred - c.atfa_fts_same_levels) for c in group]))}
            for level, group in sorted(groups.items())}
    return out


def _reasons(cases: list[CaseResult]) -> dict[str, int]:
    """How many cases carry each kind of warning (the text up to its first colon or parenthesis, measured values
    as N: "implausible tibial plateau width N mm")."""
    counts: dict[str, int] = {}
    for c in cases:
        kinds = {re.sub(r"-?\d+(\.\d+)? ?(mm|deg|°)", r"N \2", w.split(":")[0].split("(")[0].strip())
                 for w in c.warnings}
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _data_fields(data: EvalData) -> dict:
    """What a summary says of its data: the set's name and, for a synthetic set, its renderers' versions."""
    return {"data": data.name, **({"generators": data.generators} if data.generators else {})}


def run_evaluation(weights: str | Path | None, data: EvalData, device: str = "auto", use_tags: bool = False,
                   progress: bool = True) -> tuple[list[CaseResult], dict]:
    """Predict every case of ``data``; returns the per-case results and the summary tables."""
    aligner = KneeAligner.load(weights, device=device, traced=True)  # many radiographs: tracing pays for itself
    cases = []
    for i, sample in enumerate(tqdm(data.samples(), total=data.n, desc="evaluate", unit="img",
                                    disable=not progress, dynamic_ncols=True)):
        cases.append(evaluate_case(aligner, sample, i, use_tags))
    summary = summarize_cases(cases)
    summary.update({**_data_fields(data), "weights": str(weights) if weights else "shipped",
                    "laterality_input": "DICOM tag (true laterality given)" if use_tags else "image only (no tag)",
                    "model": {"name": aligner.bundle.name, "version": aligner.bundle.version},
                    "confidence_threshold": aligner.confidence_threshold})
    return cases, summary


def invariance(weights: str | Path | None, data: EvalData, angles: tuple[float, ...] = (15.0, -15.0),
               device: str = "auto", progress: bool = True) -> dict:
    """Measure every case as given, mirrored (laterality from the image) and rotated by each of ``angles``; the
    absolute differences of the copies' FNTS and FTS angles from the original's (a rotation and a mirror leave the
    clinical angle unchanged). The built-in consistency check is off, so that each copy is measured alone, each at
    the shaft levels its own exposed field gives. ``copies``: over every case; ``copies_confident``: over the pairs
    that the node would report both as confident (its consistency check aside): two confident readings of one knee."""
    from model.inference import rotated

    aligner = KneeAligner.load(weights, device=device, consistency=False, traced=True)  # as run_evaluation's
    diffs: dict[str, dict[str, list[float]]] = {}
    confident: dict[str, dict[str, list[float]]] = {}
    failed: dict[str, int] = {}
    for sample in tqdm(data.samples(), total=data.n, desc="invariance", disable=not progress, dynamic_ncols=True):
        try:
            base = aligner.predict_image(sample.image, None, sample.pixel_spacing_mm)
        except UnsupportedImage:
            failed["original"] = failed.get("original", 0) + 1
            continue
        copies = {"mirrored": np.ascontiguousarray(sample.image[:, ::-1])}
        copies.update({f"rotated {a:+g} deg": rotated(sample.image, a) for a in angles})
        for name, image in copies.items():
            try:
                other = aligner.predict_image(image, None, sample.pixel_spacing_mm)
            except UnsupportedImage:
                failed[name] = failed.get(name, 0) + 1
                continue
            diff = {"fnts": abs(other.alignment.atfa_fnts_deg - base.alignment.atfa_fnts_deg),
                    "fts": abs(other.alignment.atfa_fts_deg - base.alignment.atfa_fts_deg)}
            both_confident = not (base.low_confidence or other.low_confidence)
            for table in [diffs, confident] if both_confident else [diffs]:
                for method, value in diff.items():
                    table.setdefault(name, {"fnts": [], "fts": []})[method].append(value)
    return {**_data_fields(data), "n_cases": data.n, "no_result": failed,
            "copies": _difference_stats(diffs), "copies_confident": _difference_stats(confident)}


def _difference_stats(diffs: dict[str, dict[str, list[float]]]) -> dict:
    return {name: {m: {"n": len(v), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
                       "max": float(np.max(v))} for m, v in d.items()} for name, d in diffs.items()}


def write_cases(cases: list[CaseResult], path: Path) -> None:
    with path.open("w") as fh:
        for c in cases:
            fh.write(json.dumps(asdict(c)) + "\n")


def update_card(weights: Path, summary: dict, command: str) -> Path:
    """Record the summary under ``metrics[<data>]`` in the model card JSON beside ``weights``."""
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    metrics = card.get("metrics") or {}
    metrics[summary["data"]] = {"command": command, **summary}
    card["metrics"] = metrics
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path
