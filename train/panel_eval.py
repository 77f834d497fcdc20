"""The measurement panel in ``knee-train evaluate``: its ground truth per case and its agreement tables.

Ground truth of a case: the panel (``model.measurements``) measured on the ground-truth landmarks, at the paper's
fixed shaft levels, every landmark taken as known (as the aTFA's reference is). A measurement that is not
measurable on the ground truth (the phase's, or a joint space hidden by overlapping outlines) has no reference
and is left out of its table; the prediction's own status decides its subset: ``all`` (a value, confident or not)
and ``confident`` (status ``ok``). The projection renderer also gives each measurement on its projected geometry
(``exact``: how far the landmark definitions are from it) and the 3D knee's design values.

Per phase and measurement: the agreement statistics of ``train.metrics`` (ICC(A,1), MAD ± SD, Bland-Altman bias
and 95% limits of agreement), how many reference values the prediction did not measure, and how many it measured
where the reference is not measurable; the issue's targets are checked on the confident subset.
"""

from __future__ import annotations

import numpy as np

from model.measurements import MEASUREMENT_NAMES, SPECS, compute_measurements
from model.result import KneePrediction
from model.vocabulary import PHASE_NAMES
from train.data.sample import KneeSample
from train.metrics import agreement

# The panel beyond the aTFA (Table 2 has the aTFA); in panel order.
PANEL = tuple(n for n in MEASUREMENT_NAMES if not n.startswith("atfa"))
# Targets of issue #12 on held-out sets: (largest MAD, smallest ICC or None).
TARGETS = {name: ((0.3, None) if SPECS[name].unit == "mm" else (1.0, 0.95 if "component" not in name else None))
           for name in PANEL}


def truth_panel(sample: KneeSample) -> dict[str, float | None]:
    """The panel on the ground-truth landmarks: name -> value (None where not measurable)."""
    truth = compute_measurements(sample.landmarks, sample.scheme, sample.laterality, sample.pixel_spacing_mm,
                                 names=PANEL)
    return {name: truth[name].value for name in PANEL}


def case_panel(sample: KneeSample, pred: KneePrediction | None) -> dict[str, dict]:
    """Per measurement: ``truth``, ``pred`` (value or None), ``status`` (the prediction's), and, when the renderer
    knows them, ``exact`` and ``design``."""
    truth = truth_panel(sample)
    known = sample.meta.get("panel") or {}
    exact, design = known.get("projected") or {}, known.get("design") or {}
    out = {}
    for name in PANEL:
        m = pred.measurements.get(name) if pred is not None else None
        entry = {"truth": truth[name], "pred": m.value if m else None, "status": m.status if m else None}
        if name in exact:
            entry["exact"] = exact[name]
        if design.get(name) is not None:
            entry["design"] = design[name]
        out[name] = entry
    return out


def _mean_abs(pairs: list[tuple[float, float]]) -> dict | None:
    if not pairs:
        return None
    d = np.abs(np.array([a - b for a, b in pairs]))
    return {"n": len(pairs), "mad": float(d.mean()), "max": float(d.max())}


def measurement_block(entries: list[dict], name: str) -> dict:
    """Agreement tables of one measurement over the cases of one phase (``entries``: ``case_panel``'s)."""
    with_truth = [e for e in entries if e["truth"] is not None]
    measured = [e for e in with_truth if e["pred"] is not None]
    confident = [e for e in measured if e["status"] == "ok"]

    def table(sel: list[dict]) -> dict:
        pred, truth = (np.array([e[key] for e in sel], float) for key in ("pred", "truth"))
        return agreement(pred, truth).as_dict()

    block = {
        "unit": SPECS[name].unit, "n": len(entries), "n_truth_measurable": len(with_truth),
        "n_not_measured": len(with_truth) - len(measured),  # reference measurable, prediction gave no value
        "n_measured_without_truth": sum(e["pred"] is not None for e in entries if e["truth"] is None),
        "all": table(measured), "confident": table(confident),
        "truth_vs_exact": _mean_abs([(e["truth"], e["exact"]) for e in with_truth if e.get("exact") is not None]),
        "truth_vs_design": _mean_abs([(e["truth"], e["design"]) for e in with_truth if e.get("design") is not None]),
    }
    mad_max, icc_min = TARGETS[name]
    c = block["confident"]
    if c["n"]:
        icc = c["icc"]["icc"] if c["icc"] else float("nan")
        block["target"] = {"mad_max": mad_max, "icc_min": icc_min,
                           "met": bool(c["mad"] <= mad_max and (icc_min is None or icc >= icc_min))}
    return block


def summarize_panel(cases: list) -> dict:
    """``{phase: {measurement: block}}`` over the cases with a result (``train.evaluate.CaseResult``), for the
    measurements that apply to the phase."""
    out: dict = {}
    for phase in PHASE_NAMES:
        sel = [c for c in cases if c.phase == phase and not c.failed and c.panel]
        if not sel:
            continue
        out[phase] = {name: measurement_block([c.panel[name] for c in sel], name)
                      for name in PANEL if phase in SPECS[name].phases}
    return out
