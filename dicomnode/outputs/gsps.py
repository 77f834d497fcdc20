"""An optional, non-destructive overlay: a Grayscale Softcopy Presentation State on the source image.

Graphic layers (drawn in this order, colours as in the Secondary Capture): landmark outlines (POLYLINE per
scheme curve) and landmarks (POINT), the FNTS and FTS femoral axes and the tibial axis (POLYLINE), and text
(the result block at the top left, the disclaimer at the bottom, in DISPLAY units; a low-confidence warning in
a red layer of its own). Graphics are in PIXEL units (see :mod:`.common` for the +0.5), clipped to the image,
as presentation states allow nothing outside it.

The presentation pipeline replaces the source's own polarity handling, so a MONOCHROME1 source gets a
Presentation LUT Shape INVERSE (IDENTITY otherwise). Modality LUT and VOI come from the source; a source
without any VOI gets the window the Secondary Capture uses. Viewer support varies (Weasis and OsiriX show
presentation states, OHIF v3 does not): the Secondary Capture stays the universal fallback.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pydicom
from highdicom import PresentationLUTTransformation
from highdicom.color import CIELabColor
from highdicom.pr import (
    GraphicAnnotation,
    GraphicLayer,
    GraphicObject,
    GrayscaleSoftcopyPresentationState,
    SoftcopyVOILUTTransformation,
    TextObject,
)

from dicomnode.outputs.common import (
    NodeIdentity,
    dicom_coords,
    set_device_uid,
    target,
)
from dicomnode.outputs.description import Description, describe
from dicomnode.outputs.overlay import COLOURS, DISCLAIMER_TEXT
from dicomnode.outputs.pixels import auto_window, has_voi, modality_values
from model.result import KneePrediction

CONTENT_LABEL = "KNEEALIGN"
LINE_HEIGHT = 0.032  # DISPLAY units per text line


def clip_polyline(points: np.ndarray, width: float, height: float) -> list[np.ndarray]:
    """The parts of a polyline inside [0, width] x [0, height] (Liang-Barsky per segment), as runs of points."""
    runs: list[list[np.ndarray]] = []
    prev_end = None
    for p, q in pairwise(points):
        d = q - p
        t0, t1 = 0.0, 1.0
        for denom, num in ((-d[0], p[0]), (d[0], width - p[0]), (-d[1], p[1]), (d[1], height - p[1])):
            if denom == 0:
                if num < 0:
                    t0, t1 = 1.0, 0.0
                continue
            t = num / denom
            if denom < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
        if t0 > t1:
            prev_end = None
            continue
        a, b = p + t0 * d, p + t1 * d
        if prev_end is None or not np.allclose(prev_end, a):
            runs.append([a])
        runs[-1].append(b)
        prev_end = b
    return [np.clip(np.array(r), 0.0, [width, height]) for r in runs if len(r) >= 2]


def _layer(name: str, order: int, colour: str, description: str) -> GraphicLayer:
    return GraphicLayer(name, order, description, CIELabColor.from_rgb(*COLOURS[colour]))


def _annotations(ref: pydicom.Dataset, d: Description) -> tuple[list[GraphicLayer], list[GraphicAnnotation]]:
    cols, rows = float(ref.Columns), float(ref.Rows)
    scheme = d.scheme
    pts = dicom_coords(d.landmarks)
    layers = [_layer("LANDMARKS", 1, "curve", "Landmark outlines and landmarks")]
    annotations = []

    outline = [GraphicObject("POLYLINE", run, "PIXEL")
               for curve in scheme.curves
               for run in clip_polyline(pts[curve.start:curve.start + curve.count], cols, rows)]
    marks = [GraphicObject("POINT", p[None, :], "PIXEL") for p in pts
             if 0 <= p[0] <= cols and 0 <= p[1] <= rows]
    if outline or marks:
        annotations.append(GraphicAnnotation([ref], layers[0], graphic_objects=outline + marks))

    for order, ax in enumerate(d.axes, start=2):
        layer = _layer(f"AXIS_{ax.key.upper()}", order, ax.key, ax.label)
        layers.append(layer)
        runs = clip_polyline(dicom_coords(ax.points), cols, rows)
        if runs:
            annotations.append(GraphicAnnotation([ref], layer, graphic_objects=[
                GraphicObject("POLYLINE", run, "PIXEL") for run in runs]))

    lines = d.plain_lines
    for key, selected in (("text", [ln for ln in lines if ln.colour != "warning"]),
                          ("warning", [ln for ln in lines if ln.colour == "warning"])):
        if not selected:
            continue
        layer = _layer("WARNING" if key == "warning" else "TEXT", len(layers) + 1, key, "Result text")
        layers.append(layer)
        texts = []
        for ln in selected:
            top = 0.01 + LINE_HEIGHT * lines.index(ln)
            texts.append(TextObject(ln.text, "DISPLAY", bounding_box=(0.01, top, 0.8, top + LINE_HEIGHT * 0.9),
                                    text_justification="LEFT"))
        if key == "text":
            texts.append(TextObject(DISCLAIMER_TEXT, "DISPLAY", bounding_box=(0.01, 0.955, 0.99, 0.99),
                                    text_justification="LEFT"))
        annotations.append(GraphicAnnotation([ref], layer, text_objects=texts))
    return layers, annotations


def build_gsps(source: pydicom.Dataset, result: KneePrediction | Description, *, series_uid: str | None = None,
               sop_instance_uid: str | None = None, instance_number: int = 1,
               identity: NodeIdentity | None = None) -> pydicom.Dataset:
    """The presentation state showing a result (a prediction or its description) on ``source``, in the source's
    study and a new series."""
    d = describe(result)
    t = target(source, d.prediction, "gsps", series_uid=series_uid, sop_instance_uid=sop_instance_uid,
               identity=identity)
    layers, annotations = _annotations(t.ref, d)
    voi = None
    if not has_voi(source):
        centre, width = auto_window(modality_values(source))
        voi = [SoftcopyVOILUTTransformation(window_center=round(centre, 2), window_width=round(width, 2),
                                            window_explanation="KneeAlign automatic window")]
    inverse = str(source.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    gsps = GrayscaleSoftcopyPresentationState(
        referenced_images=[t.ref],
        series_instance_uid=t.series_uid,
        series_number=t.series_number,
        sop_instance_uid=t.sop_instance_uid,
        instance_number=instance_number,
        content_label=CONTENT_LABEL,
        content_description=t.series_description,
        graphic_annotations=annotations,
        graphic_layers=layers,
        voi_lut_transformations=voi,
        presentation_lut_transformation=PresentationLUTTransformation(
            presentation_lut_shape="INVERSE" if inverse else "IDENTITY"),
        series_description=t.series_description,
        **t.equipment,
    )
    gsps.Laterality = d.laterality
    set_device_uid(gsps, t)
    return gsps
