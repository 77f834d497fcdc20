"""Pictures of the measurement panel's lines on synthetic knees (the figures of docs/measurements.md).

    python -m train.panel_figures docs/images

draws, for a pre-operative and a post-operative synthetic knee (fixed seeds of the 2D generator), each
measurement of ``model.measurements`` with the lines it is taken between, measured on the ground-truth landmarks.
matplotlib's object API (no pyplot state).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from model.measurements import SPECS, Measurement, compute_measurements
from model.vocabulary import POSTOP, PREOP
from train.data.sample import KneeSample
from train.data.synthetic import synthetic_sample

# phase -> (seed, pictures: the measurements drawn in each)
CASES = {PREOP: (5, (("mpta",), ("aldfa",), ("jlca",), ("jsw_medial", "jsw_lateral"))),
         POSTOP: (4, (("femoral_component",), ("tibial_component",)))}
COLOURS = ("#ffd23f", "#3fd2ff")  # first and second line of a measurement


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Where the infinite lines through segments ``a`` and ``b`` (2x2 arrays) cross; None when parallel."""
    da, db = a[1] - a[0], b[1] - b[0]
    det = da[0] * db[1] - da[1] * db[0]
    if abs(det) < 1e-9 * np.linalg.norm(da) * np.linalg.norm(db):
        return None
    t = ((b[0, 0] - a[0, 0]) * db[1] - (b[0, 1] - a[0, 1]) * db[0]) / det
    return a[0] + t * da


def _is_axis(m: Measurement, k: int) -> bool:
    """Whether line ``k`` of ``m`` is a bone axis (the panel lists an angle's axis first)."""
    return m.name.startswith("atfa") or (k == 0 and bool(SPECS[m.name].bones))


def drawn_lines(m: Measurement, span: float) -> list[np.ndarray]:
    """The segments to draw: joint lines centred where measured, at least ``span`` long; a bone axis from its far
    end on to where it meets the joint line (widths as measured)."""
    segs = [np.asarray(seg, float) for seg in m.lines]
    if m.unit == "mm":
        return segs
    out = []
    for k, seg in enumerate(segs):
        other = segs[1 - k] if len(segs) == 2 else None
        cross = _intersection(seg, other) if other is not None else None
        if _is_axis(m, k) and cross is not None and np.linalg.norm(cross - seg.mean(0)) < 3 * span:
            far = seg[int(np.argmax(np.linalg.norm(seg - cross, axis=1)))]
            out.append(np.array([far, cross + 0.1 * (cross - far)]))
        elif _is_axis(m, k):
            out.append(seg)
        else:
            d = seg[1] - seg[0]
            half = max(0.625 * np.linalg.norm(d), span / 2) * d / np.linalg.norm(d)
            out.append(np.array([seg.mean(0) - half, seg.mean(0) + half]))
    return out


def value_text(m: Measurement) -> str:
    if m.value is None:
        return f"{SPECS[m.name].label}: not measurable"
    unit = " mm" if m.unit == "mm" else "°"
    extra = f"\n({m.deviation_deg:+.1f}° from perpendicular)" if m.deviation_deg is not None else ""
    return f"{SPECS[m.name].label} {m.value:.1f}{unit}{extra}"


def draw(ax, sample: KneeSample, panel: dict[str, Measurement], names: tuple[str, ...],
         window: tuple[int, int, int, int]) -> None:
    """The image in ``window`` (x0, y0, x1, y1) with the lines of the measurements ``names`` (one picture)."""
    x0, y0, x1, y1 = window
    ax.imshow(sample.image[y0:y1, x0:x1], cmap="gray", extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    for name in names:
        m = panel[name]
        for k, seg in enumerate(drawn_lines(m, span=1.2 * sample.scheme.reference_length(sample.landmarks))):
            ax.plot(seg[:, 0], seg[:, 1], color=COLOURS[k % 2], linewidth=1.6,
                    marker="o" if m.unit == "mm" else None, markersize=2)
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_axis_off()
    ax.set_title("\n".join(value_text(panel[n]) for n in names), fontsize=9)


def panel_figure(sample: KneeSample, pictures: tuple[tuple[str, ...], ...], path: Path) -> Path:
    panel = compute_measurements(sample.landmarks, sample.scheme, sample.laterality, sample.pixel_spacing_mm)
    lo, hi = sample.landmarks.min(0), sample.landmarks.max(0)
    h, w = sample.image.shape
    margin = 0.05 * (hi - lo).max()
    window = (int(max(0, lo[0] - margin)), int(max(0, lo[1] - margin)), int(min(w, hi[0] + margin)),
              int(min(h, hi[1] + margin)))
    aspect = (window[3] - window[1]) / max(1, window[2] - window[0])
    fig = Figure(figsize=(2.8 * len(pictures), 2.8 * aspect + 0.6), layout="constrained")
    for ax, names in zip(np.atleast_1d(fig.subplots(1, len(pictures))), pictures):
        draw(ax, sample, panel, names, window)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=72)
    Image.open(buffer).convert("RGB").quantize(colors=96).save(path, optimize=True)  # a small file for the docs
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    for phase, (seed, pictures) in CASES.items():
        sample = synthetic_sample(seed, phase, spacing_mm=0.5)
        print(panel_figure(sample, pictures, args.out / f"measurements-{phase}.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
