"""Evaluation report: Markdown tables (the paper's Table 1 and Table 2 layout), Bland-Altman plots and overlay
pictures of the best, median and worst cases (matplotlib's object API: no pyplot, no global backend state)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from model.alignment import compute_alignment
from model.measurements import SPECS
from model.scheme import load_scheme
from model.vocabulary import PHASE_NAMES, PHASES
from train.data.sample import KneeSample
from train.evaluate import CaseResult

SUBSETS = (("all", "all"), ("confident", "not flagged"))


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pair(stat: dict, unit: str) -> str:
    """``{"mean": m, "mad": a}`` as "+m / a" with ``unit``."""
    return f"{stat['mean']:+.2f} / {stat['mad']:.2f}{unit}"


def table1(summary: dict) -> str:
    lines = ["| Data | Subset | n | rP2P mean | rP2P median | rP2P 95%ile | rP2C mean | rP2C median | rP2C 95%ile |",
             "|---|---|---|---|---|---|---|---|---|"]
    for phase, block in summary["phases"].items():
        for key, label in SUBSETS:
            b = block[key]
            p, c = b["rp2p"], b["rp2c"]
            lines.append(f"| {PHASES[phase].title} | {label} | {b['n']} | {_f(p['mean'])}% | {_f(p['median'])}% | "
                         f"{_f(p['p95'])}% | {_f(c['mean'])}% | {_f(c['median'])}% | {_f(c['p95'])}% |")
    return "\n".join(lines)


def _agreement_cells(a: dict) -> str:
    """n, ICC(A,1) [95% CI], MAD ± SD, bias ± SD and 95% limits of agreement as table cells."""
    icc = a["icc"]
    icc_text = f"{icc['icc']:.3f} [{icc['ci_low']:.3f}, {icc['ci_high']:.3f}]" if icc else "–"
    return (f"{a['n']} | {icc_text} | {_f(a['mad'])} ± {_f(a['mad_sd'])} | {_f(a['bias'])} ± {_f(a['bias_sd'])} | "
            f"{_f(a['loa_low'])} to {_f(a['loa_high'])}")


def table2(summary: dict) -> str:
    lines = [("| Data | Method | Subset | n | ICC(A,1) [95% CI] | MAD ± SD (°) | BAA bias ± SD (°) | 95% LoA (°) | "
              "max abs diff (°) | sign errors > 1° |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for phase, block in summary["phases"].items():
        for method in ("fts", "fnts"):
            for key, label in SUBSETS:
                a = block[key][method]
                lines.append(f"| {PHASES[phase].title} | {method.upper()} | {label} | {_agreement_cells(a)} | "
                             f"{_f(a['max_abs_diff'])} | {a['sign_errors']} |")
    return "\n".join(lines)


def _target_text(block: dict) -> str:
    target = block.get("target")
    if not target:
        return "–"
    unit = " mm" if block["unit"] == "mm" else "°"
    icc = f", ICC ≥ {target['icc_min']:.2f}" if target["icc_min"] else ""
    return f"MAD ≤ {target['mad_max']:g}{unit}{icc}: {'met' if target['met'] else 'not met'}"


def table3(summary: dict) -> str:
    """The measurement panel: agreement with the panel of the ground-truth landmarks, per phase and measurement."""
    lines = [("| Data | Measurement | Subset | n | ICC(A,1) [95% CI] | MAD ± SD | bias ± SD | 95% LoA | "
              "reference measurable, not measured | target (confident) |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for phase, blocks in summary.get("panel", {}).items():
        for name, block in blocks.items():
            label = f"{SPECS[name].label} ({'mm' if block['unit'] == 'mm' else '°'})"
            for key, subset in SUBSETS:
                missing = f"{block['n_not_measured']} of {block['n_truth_measurable']}" if key == "all" else ""
                target = _target_text(block) if key == "confident" else ""
                lines.append(f"| {PHASES[phase].title} | {label} | {subset} | {_agreement_cells(block[key])} | "
                             f"{missing} | {target} |")
    return "\n".join(lines)


def panel_checks(summary: dict) -> list[str]:
    """Lines on the panel's reference: measurable cases, and its distance from the renderer's exact and design
    values where known."""
    lines = []
    for phase, blocks in summary.get("panel", {}).items():
        parts = []
        for name, block in blocks.items():
            unit = " mm" if block["unit"] == "mm" else "°"
            text = f"{SPECS[name].label}: reference measurable in {block['n_truth_measurable']} of {block['n']}"
            for key, what in (("truth_vs_exact", "exact"), ("truth_vs_design", "design")):
                if block.get(key):
                    text += f", vs {what} mean |diff| {block[key]['mad']:.2f}{unit} (max {block[key]['max']:.2f})"
            parts.append(text)
        lines.append(f"- {PHASES[phase].title}: " + "; ".join(parts))
    return lines


def markdown_report(summary: dict, command: str | None = None) -> str:
    """The whole report as Markdown."""
    parts = [f"# KneeAlign evaluation: {summary['data']}", ""]
    if command:
        parts += [f"Command: `{command}`", ""]
    if summary.get("generators"):
        parts.append("- Renderers: " + ", ".join(f"{k} {v}" for k, v in summary["generators"].items()))
    parts += [
        f"- Weights: {summary['weights']} ({summary['model']['name']} {summary['model']['version']})",
        (f"- Cases: {summary['n_cases']}; laterality input: {summary['laterality_input']}; "
         f"confidence threshold {summary['confidence_threshold']}"),
        (f"- Phase (pre/post-op) accuracy: {100 * summary['phase_accuracy']:.2f}% "
         f"({summary['n_phase_errors']} wrong); laterality accuracy: {100 * summary['laterality_accuracy']:.2f}% "
         f"({summary['n_laterality_errors']} wrong)"),
    ]
    if summary.get("n_no_result"):
        example = summary["failures"][0]
        parts.append(f"- No result at all for {summary['n_no_result']} cases (counted as wrong above), e.g. "
                     f"{example['source']}: {example['error']}")
    for phase, block in summary["phases"].items():
        parts.append(f"- {PHASES[phase].title}: {block['n']} cases; no result for {block['n_no_result']}; "
                     f"{block['n_low_confidence']} flagged low-confidence; "
                     f"{100 * block['fraction_not_reported']:.1f}% without a confident number")
        shown, minimum = block.get("measured_with_0_6_shaft"), block.get("measured_with_minimum_shaft")
        if shown and shown["n"]:
            parts.append(f"  - measured confidently: {shown['confident']} of the {shown['n']} cases "
                         f"({100 * shown['confident'] / shown['n']:.1f}%) with at least 0.6 plateau widths of both "
                         "shafts in the exposed field"
                         + (f"; {minimum['confident']} of the {minimum['n']} "
                            f"({100 * minimum['confident'] / minimum['n']:.1f}%) with the node's minimum (femur "
                            f"{minimum['levels']['femur']:.1f}, tibia {minimum['levels']['tibia']:.1f})"
                            if minimum and minimum["n"]
                            else ""))
        same = block.get("confident_vs_truth_at_same_levels")
        if same and same["n_not_fixed_levels"]:
            parts.append(f"  - {same['n_not_fixed_levels']} of {same['n']} confident cases used adaptive shaft levels;"
                         f" against the ground truth at the same levels FNTS MAD {same['fnts']['mad']:.2f}° "
                         f"(FTS {same['fts']['mad']:.2f}°); the change of levels itself moves the reference by "
                         f"{same['level_shift_fnts_mad_deg']:.2f}° FNTS, {same['level_shift_fts_mad_deg']:.2f}° FTS "
                         "on average")
        by_level = block.get("confident_error_by_far_level")
        if by_level:
            levels = "; ".join(f"{bone} " + ", ".join(f"{level} ({g['n']}, {g['fnts_mad']:.2f} / {g['fts_mad']:.2f}°)"
                                                   for level, g in groups.items())
                               for bone, groups in by_level.items())
            parts.append("  - landmark error by the axes' far shaft level (plateau widths; n, FNTS / FTS MAD against "
                         f"the ground truth at the same levels): {levels}")
        src = block.get("confident_error_sources")
        if src and src["n"]:
            deg = {k: _pair(src[k], "°") for k in ("femoral_fnts_deg", "femoral_fts_deg", "tibial_deg")}
            pct = {k: _pair(src[k], " %") for k in ("notch_lateral_pct", "notch_distal_pct")}
            parts.append(f"  - where the error comes from ({src['n']} confident cases with phase and side right, "
                         "prediction minus ground truth at the same levels, mean / mean absolute; aTFA = tibial - "
                         f"femoral): femoral axis to the notch {deg['femoral_fnts_deg']}, between the shaft levels "
                         f"{deg['femoral_fts_deg']}; tibial axis {deg['tibial_deg']}; notch midpoint "
                         f"{pct['notch_lateral_pct']} lateral, {pct['notch_distal_pct']} distal (of the plateau width)")
        offsets = block.get("landmark_offsets")
        if offsets:
            top = ", ".join(f"{o['landmark']} ({o['lateral_pct']:+.1f} / {o['distal_pct']:+.1f} %)"
                            for o in offsets["largest"][:3])
            parts.append(f"  - the same offset in every image ({offsets['n']} cases with phase and side right, "
                         f"train.landmark_bias): mean landmark error {offsets['p2p_mean_pct']:.2f} %, per-landmark "
                         f"median offsets {offsets['offset_mean_pct']:.2f} % on average (largest, lateral / distal: "
                         f"{top}); without the offsets measured on the other half of the cases "
                         f"{offsets['p2p_offset_removed_mean_pct']:.2f} % (of the plateau width)")
        axes = block.get("truth_vs_projected_axes_mad_deg")
        if axes:
            parts.append(f"  - ground-truth landmark angles vs the projected 3D shaft axes: mean |difference| FTS "
                         f"{axes['fts']:.2f}°, FNTS {axes['fnts']:.2f}° (a property of the definitions)")
        match = block.get("flag_vs_axes_visible")
        if match:
            parts.append(f"  - flagged: {match['hidden_flagged']} of the {match['hidden']} cases with an axis landmark "
                         f"outside the exposed field (ground truth), {match['visible_flagged']} of the "
                         f"{match['visible']} with all of them exposed")
    if summary.get("n_tag_contradicted"):
        parts.append(f"- Laterality tag contradicted by the image (result flagged): {summary['n_tag_contradicted']}")
    if summary.get("n_low_confidence_by_reason"):
        parts.append("- Warnings by kind: " + "; ".join(f"{k}: {v}" for k, v in
                                                       summary["n_low_confidence_by_reason"].items()))
    if summary.get("time_ms"):
        parts.append(f"- Inference time per image: median {summary['time_ms']['median']:.0f} ms, "
                     f"95th percentile {summary['time_ms']['p95']:.0f} ms")
    parts += [
        "", "## Table 1: landmark localisation",
        "", ("Per image, the mean distance in percent of the reference length (ground-truth tibial plateau "
             "corners); then mean, median and 95th percentile over images. rP2C measures to the ground-truth "
             "outline of the landmark's own curve."), "", table1(summary),
        "", "## Table 2: aTFA agreement with the angles of the ground-truth landmarks",
        "", (f"ICC form: {summary['icc_form']}; 95% CI after McGraw & Wong (1996). MAD: mean absolute difference. "
             "BAA: Bland-Altman bias (automated minus reference) and 95% limits of agreement. A sign error is a "
             "case read on the other side of zero from the reference and more than 1° away from it."),
        "", table2(summary), "",
    ]
    exact = {p: b["landmark_vs_exact_angle_max_abs_deg"] for p, b in summary["phases"].items()
             if "landmark_vs_exact_angle_max_abs_deg" in b}
    if exact:
        parts += ["Check of the reference: largest difference between the angle from the ground-truth landmarks and "
                  "the generator's exact angle: " + "; ".join(
                      f"{PHASES[p].title} FTS {v['fts']:.3f}°, FNTS {v['fnts']:.3f}°" for p, v in exact.items()), ""]
    if summary.get("panel"):
        parts += [
            "## Table 3: the knee alignment panel against the panel of the ground-truth landmarks",
            "", ("Definitions in docs/measurements.md. Reference: the panel measured on the ground-truth landmarks "
                 "(the paper's shaft levels); a reference that is not measurable (e.g. a joint space hidden by "
                 "overlapping outlines) leaves the case out. Subsets: every case the node gave a value for, and the "
                 "cases whose measurement is not flagged. Targets of issue #12 on held-out sets."),
            "", table3(summary), "", *panel_checks(summary), ""]
    return "\n".join(parts)


def bland_altman_plot(cases: list[CaseResult], phase: str, path: Path) -> Path:
    """Bland-Altman plots (FTS and FNTS) of one phase; low-confidence cases drawn as crosses."""
    sel = [c for c in cases if c.phase == phase and not c.failed]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, method in zip(axes, ("fts", "fnts")):
        auto = np.array([getattr(c, f"atfa_{method}_pred") for c in sel])
        ref = np.array([getattr(c, f"atfa_{method}") for c in sel])
        flagged = np.array([c.low_confidence for c in sel], dtype=bool)
        mean, diff = (auto + ref) / 2, auto - ref
        ax.scatter(mean[~flagged], diff[~flagged], s=10, alpha=0.7, label="confident")
        if flagged.any():
            ax.scatter(mean[flagged], diff[flagged], s=22, marker="x", color="tab:red", label="low confidence")
        bias = float(diff.mean()) if len(diff) else 0.0
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        for y, style in ((bias, "-"), (bias - 1.96 * sd, "--"), (bias + 1.96 * sd, "--")):
            ax.axhline(y, color="k", linestyle=style, linewidth=1)
        ax.set_title(f"{PHASES[phase].title} aTFA, {method.upper()}: bias {bias:.2f}° ± {sd:.2f}°")
        ax.set_xlabel("mean of automated and reference (°)")
        ax.set_ylabel("automated − reference (°)")
        ax.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def overlay_plot(sample: KneeSample, case: CaseResult, path: Path, title: str) -> Path:
    """The image around the knee with the true (green) and predicted (red) landmarks and the predicted axes."""
    pred = np.asarray(case.landmarks_pred)
    gt = sample.landmarks
    both = np.vstack([pred, gt])
    lo, hi = both.min(0), both.max(0)
    margin = 0.15 * (hi - lo).max()
    h, w = sample.image.shape
    x0, y0 = int(max(0, lo[0] - margin)), int(max(0, lo[1] - margin))
    x1, y1 = int(min(w, hi[0] + margin)), int(min(h, hi[1] + margin))
    fig = Figure(figsize=(6, 6 * max(1, y1 - y0) / max(1, x1 - x0)), layout="constrained")
    ax = fig.subplots()
    ax.imshow(sample.image[y0:y1, x0:x1], cmap="gray", extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    ax.scatter(gt[:, 0], gt[:, 1], s=6, color="lime", label="ground truth")
    ax.scatter(pred[:, 0], pred[:, 1], s=6, color="red", label="predicted")
    alignment = compute_alignment(pred, load_scheme(case.phase_pred), case.laterality_pred)
    for axis, colour in ((alignment.femoral_axis_fnts, "cyan"), (alignment.tibial_axis, "yellow")):
        ax.plot([axis.proximal[0], axis.distal[0]], [axis.proximal[1], axis.distal[1]], color=colour, linewidth=1)
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_axis_off()
    ax.set_title(f"{title}: {case.source}\nrP2P {case.rp2p:.2f}%  rP2C {case.rp2c:.2f}%  FNTS "
                 f"{case.atfa_fnts_pred:+.1f}° (true {case.atfa_fnts:+.1f}°)", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def pick_cases(cases: list[CaseResult], phase: str) -> dict[str, CaseResult]:
    """Best, median and worst case of a phase by rP2P."""
    sel = sorted((c for c in cases if c.phase == phase and not c.failed), key=lambda c: c.rp2p)
    if not sel:
        return {}
    return {"best": sel[0], "median": sel[len(sel) // 2], "worst": sel[-1]}


def write_figures(cases: list[CaseResult], reload: Callable[[int], KneeSample], out_dir: Path) -> list[Path]:
    """Bland-Altman plots and best/median/worst overlays for every phase present."""
    written = []
    for phase in PHASE_NAMES:
        if not any(c.phase == phase and not c.failed for c in cases):
            continue
        written.append(bland_altman_plot(cases, phase, out_dir / f"bland_altman_{phase}.png"))
        for label, case in pick_cases(cases, phase).items():
            written.append(overlay_plot(reload(case.index), case, out_dir / "overlays" / f"{phase}_{label}.png",
                                        f"{PHASES[phase].title} {label}"))
    return written
