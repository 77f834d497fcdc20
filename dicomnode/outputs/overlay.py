"""What the overlays show, independent of how they are drawn: axes, landmark curves, and the text lines.

The Secondary Capture burns these into pixels and the presentation state encodes them as graphics, so both
say the same thing in the same words. Points stay in prediction coordinates (``[column, row]`` pixel centres
of the source image); each renderer converts them.

The measurement panel (``model.measurements``) is a compact table in the text block, never over the bone: short
rows of "label value" cells, each value marked when it is not to be read as a measurement ("?" low confidence,
"n/a" not measurable) or lies outside the site's reference range ("*"), with a key line for the marks used;
widths from the detector's pixel spacing only (no magnification correction) say "at detector".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.alignment import Axis
from model.measurements import DETECTOR_SPACING_NOTE, SPECS, STATUS_LOW_CONFIDENCE, Measurement
from model.result import KneePrediction
from model.scheme import LandmarkScheme, load_scheme
from model.vocabulary import phase

DISCLAIMER_TEXT = "NOT FOR DIAGNOSTIC USE - synthetic-trained research software"
LOW_CONFIDENCE_TEXT = "LOW CONFIDENCE - NOT A VALID MEASUREMENT"
DEGREE_SIGN = "\u00b0"

# RGB colours, shared so the SC legend and the presentation-state layers match.
COLOURS = {
    "fnts": (255, 70, 255),    # magenta: femoral axis, FNTS
    "fts": (255, 170, 0),      # orange: femoral axis, FTS
    "tibia": (0, 230, 120),    # green: tibial axis
    "curve": (90, 190, 255),   # light blue: landmark outlines
    "point": (255, 235, 60),   # yellow: landmarks
    "text": (255, 255, 255),
    "warning": (255, 50, 50),  # red: low confidence
    "disclaimer": (255, 220, 0),
}


@dataclass(frozen=True)
class AxisLine:
    key: str  # "fnts", "fts" or "tibia": also the colour
    label: str
    axis: Axis

    @property
    def points(self) -> np.ndarray:
        return np.array([self.axis.proximal, self.axis.distal], dtype=np.float64)


@dataclass(frozen=True)
class TextLine:
    text: str
    colour: str  # a key of COLOURS
    emphasis: bool = False  # drawn larger (the low-confidence warning)
    legend: str | None = None  # a key of COLOURS drawn as a short line before the text


def scheme_of(prediction: KneePrediction) -> LandmarkScheme:
    """The landmark scheme the prediction follows (checked against its id and point count)."""
    scheme = load_scheme(prediction.phase)
    if scheme.id != prediction.scheme_id:
        raise ValueError(f"prediction follows scheme {prediction.scheme_id!r}, the shipped one is {scheme.id!r}")
    scheme.check_points(prediction.landmarks, "prediction landmarks")
    return scheme


def axis_lines(prediction: KneePrediction) -> list[AxisLine]:
    a = prediction.alignment
    return [AxisLine("fnts", "Femoral axis (FNTS)", a.femoral_axis_fnts),
            AxisLine("fts", "Femoral axis (FTS)", a.femoral_axis_fts),
            AxisLine("tibia", "Tibial axis", a.tibial_axis)]


def format_angle(deg: float, degree_sign: str = DEGREE_SIGN) -> str:
    """``+6.2° valgus``, ``-3.0° varus``, ``0.0° neutral`` (the sign convention of model.alignment)."""
    shown = round(float(deg), 1)
    if shown == 0:
        return f"0.0{degree_sign} neutral"
    return f"{shown:+.1f}{degree_sign} {'valgus' if shown > 0 else 'varus'}"


def laterality_word(prediction: KneePrediction) -> str:
    return {"L": "Left", "R": "Right"}[prediction.laterality]


def phase_word(prediction: KneePrediction) -> str:
    return phase(prediction.phase).word


def laterality_source_text(prediction: KneePrediction) -> str:
    return {"tag": "DICOM laterality tag", "image": "image content (no laterality tag)"}.get(
        prediction.laterality_source, prediction.laterality_source)


def shaft_levels_text(prediction: KneePrediction) -> str:
    """The shaft levels the axes went through, e.g. "Shaft levels: femur 1.3/0.8, tibia 0.8/1.3 plateau widths
    from the joint line (the paper's)"; adapted levels say so."""
    levels = prediction.alignment.levels
    kind = "the paper's" if levels.fixed else "adapted to the exposed shafts"
    return f"Shaft levels: {levels.describe()} from the joint line ({kind})"


def confidence_text(prediction: KneePrediction) -> str:
    return f"confidence {prediction.confidence:.0%} (threshold {prediction.confidence_threshold:.0%})"


def status_note(prediction: KneePrediction) -> str:
    """One sentence stating the result's status, for the SR and the overlays."""
    if prediction.low_confidence:
        reasons = f" Why: {'; '.join(prediction.warnings)}." if prediction.warnings else ""
        return (f"{LOW_CONFIDENCE_TEXT}: {confidence_text(prediction)}.{reasons} "
                "The angles are shown for review only; check the landmarks before any use.")
    return f"Result above the confidence threshold: {confidence_text(prediction)}."


# The panel's rows in the text block: (measurements, label of the row or None); cells in the order given.
PANEL_ROWS = ((("mpta", "aldfa", "jlca"), None), (("jsw_medial", "jsw_lateral"), "JSW"),
              (("femoral_component",), None), (("tibial_component",), None))
CELL_LABELS = {"jsw_medial": "medial", "jsw_lateral": "lateral", "femoral_component": "Femoral component",
               "tibial_component": "Tibial component"}
MARKS = {"low": ("?", "low confidence"), "absent": ("n/a", "not measurable"),
         "range": ("*", "outside the site's range")}


def panel_value(m: Measurement, degree_sign: str = DEGREE_SIGN) -> str:
    """E.g. "87.2°", "+1.2°" (JLCA, signed), "3.6 mm", "96.1° (6.1° valgus)" (a component)."""
    unit = " mm" if m.unit == "mm" else degree_sign
    text = f"{m.value:+.1f}{unit}" if m.name == "jlca" else f"{m.value:.1f}{unit}"
    if m.deviation_deg is not None:
        dev = round(m.deviation_deg, 1)
        text += f" ({abs(dev):.1f}{degree_sign} {'valgus' if dev > 0 else 'varus' if dev < 0 else 'neutral'})"
    return text


def _cell(m: Measurement, degree_sign: str) -> tuple[str, set[str]]:
    label = CELL_LABELS.get(m.name, SPECS[m.name].label)
    if m.value is None:
        return f"{label} {MARKS['absent'][0]}", {"absent"}
    marks = set()
    value = panel_value(m, degree_sign)
    if m.status == STATUS_LOW_CONFIDENCE:
        marks.add("low")
        value += MARKS["low"][0]
    if m.outside_site_range:
        marks.add("range")
        value += MARKS["range"][0]
    return f"{label} {value}", marks


def panel_lines(prediction: KneePrediction, degree_sign: str = DEGREE_SIGN) -> list[TextLine]:
    """The measurement panel as short text rows (the aTFA has its own lines), then a key to the marks used."""
    lines, used = [], set()
    for names, row_label in PANEL_ROWS:
        cells = []
        for name in names:
            m = prediction.measurements.get(name)
            if m is None or prediction.phase not in m.spec.phases:
                continue
            text, marks = _cell(m, degree_sign)
            cells.append(text)
            used |= marks
        if cells:
            if row_label == "JSW" and any(getattr(prediction.measurements.get(n), "reason", None) ==
                                          DETECTOR_SPACING_NOTE for n in names):
                row_label = "JSW at detector"  # ImagerPixelSpacing only: not corrected for magnification
            lines.append(TextLine(((row_label + ": ") if row_label else "") + "   ".join(cells), "text"))
    ranges = [f"{SPECS[n].label} {m.site_range.describe(m.unit).replace(DEGREE_SIGN, degree_sign)}"
              for n, m in prediction.measurements.items() if m.outside_site_range]
    key = [f"{MARKS[k][0]} {MARKS[k][1]}" for k in ("low", "absent") if k in used]
    if key:
        lines.append(TextLine("; ".join(key), "text"))
    if "range" in used:
        lines.append(TextLine(f"* outside the site's range: {', '.join(ranges)}", "text"))
    return lines


def summary_lines(prediction: KneePrediction, degree_sign: str = DEGREE_SIGN) -> list[TextLine]:
    """The text block of an overlay, top to bottom (the disclaimer is separate: :data:`DISCLAIMER_TEXT`)."""
    low = prediction.low_confidence
    flag = " (unreliable)" if low else ""
    lat = laterality_word(prediction)
    lines = []
    if low:
        lines.append(TextLine(LOW_CONFIDENCE_TEXT, "warning", emphasis=True))
        lines += [TextLine(f"Why: {reason}", "warning") for reason in prediction.warnings[:2]]
    lines += [
        TextLine(f"{lat} knee, {phase_word(prediction)}", "text"),
        TextLine(f"aTFA FNTS: {format_angle(prediction.alignment.angle_deg('fnts'), degree_sign)}{flag}",
                 "warning" if low else "text", legend="fnts"),
        TextLine(f"aTFA FTS: {format_angle(prediction.alignment.angle_deg('fts'), degree_sign)}{flag}",
                 "warning" if low else "text", legend="fts"),
        TextLine("Tibial axis", "text", legend="tibia"),
        *panel_lines(prediction, degree_sign),
        TextLine(shaft_levels_text(prediction), "text"),
        TextLine(confidence_text(prediction).capitalize(), "warning" if low else "text"),
        TextLine(f"{prediction.model_name} {prediction.model_version}", "text"),
    ]
    return lines
