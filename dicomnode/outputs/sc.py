"""The picture everyone can see: an RGB Secondary Capture of the source with the result burnt in.

The source is shown as its VOI (window or LUT) and polarity say, resized so the long side of the picture is at
most :data:`MAX_SIDE` pixels (small sources are enlarged to :data:`MIN_SIDE` so the text stays readable); a
header band above the radiograph holds the result (laterality, phase, both angles, confidence, model), a footer
band the "not for diagnostic use" line, so no text hides anatomy. Landmark outlines, landmarks, both femoral
axes and the tibial axis are drawn antialiased with OpenCV. A low-confidence result gets a red warning line
and a red frame around the radiograph. No pixel spacing is stated: this is a picture, not an image to measure.

The picture is stored losslessly compressed by default (JPEG 2000 Lossless with the reversible colour transform,
Photometric Interpretation YBR_RCT): on a grey radiograph with thin coloured lines the two chroma components are
almost empty, so the file is a fraction of the uncompressed RGB one and decodes to the identical pixels. A
destination that does not accept JPEG 2000 gets it decompressed at sending time (:mod:`dicomnode.dispatch.scu`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from highdicom.sc import SCImage
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

from dicomnode.outputs.common import (
    NodeIdentity,
    patient_orientation,
    set_device_uid,
    target,
)
from dicomnode.outputs.description import Description, describe
from dicomnode.outputs.overlay import COLOURS, DEGREE_SIGN, DISCLAIMER_TEXT, TextLine
from dicomnode.outputs.pixels import display_image
from model.result import KneePrediction

MAX_SIDE = 2048
MIN_SIDE = 1024
FONT = cv2.FONT_HERSHEY_SIMPLEX
SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing
SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")
SC_TRANSFER_SYNTAXES = (JPEG2000Lossless, ExplicitVRLittleEndian)  # the first is the default
logging.getLogger("openjpeg").setLevel(logging.WARNING)  # it logs "tile number 1 / 1" at INFO for every encode


class _Pen:
    """Text and line sizes for one picture, scaled to its width."""

    def __init__(self, width: int, short_side: int, lines: list[str]):
        self.scale = short_side / 1150.0
        widest = max(cv2.getTextSize(t, FONT, 1.0, 2)[0][0] for t in lines)
        self.scale = min(self.scale, 0.94 * width / max(widest, 1) / 1.25)  # emphasis lines are 1.25x
        self.thick = max(1, round(2 * self.scale))
        self.text_h = cv2.getTextSize("Ag", FONT, self.scale, self.thick)[0][1]
        self.line_h = int(self.text_h * 2.0)
        self.margin = max(4, int(self.text_h * 0.8))


def _put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour, thick: int) -> None:
    """cv2.putText with the degree sign (which OpenCV 4's Hershey fonts lack) drawn as a small ring."""
    x, y = org
    for i, part in enumerate(text.split(DEGREE_SIGN)):
        if i:
            h = cv2.getTextSize("0", FONT, scale, thick)[0][1]
            r = max(2, round(h * 0.17))
            cv2.circle(img, (x + r + thick, y - h + r), r, colour, max(1, thick - 1), cv2.LINE_AA)
            x += 2 * r + 3 * thick
        if part:
            cv2.putText(img, part, (x, y), FONT, scale, colour, thick, cv2.LINE_AA)
            x += cv2.getTextSize(part, FONT, scale, thick)[0][0]


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32)


def _draw_graphics(img: np.ndarray, d: Description, to_sc, long_side: int) -> None:
    """Landmark curves and points, then the axes (each extended faintly so the angle's vertex shows)."""
    scheme = d.scheme
    pts = to_sc(d.landmarks)
    line = max(1, round(long_side / 900))
    for curve in scheme.curves:
        seg = _fixed(pts[curve.start:curve.start + curve.count])
        cv2.polylines(img, [seg], curve.closed, COLOURS["curve"], line, cv2.LINE_AA, SHIFT)
    radius = max(2, round(long_side / 450))
    for p in _fixed(pts):
        cv2.circle(img, tuple(int(v) for v in p), radius << SHIFT, COLOURS["point"], -1, cv2.LINE_AA, SHIFT)
    axes = d.axes
    by_key = {ax.key: to_sc(ax.points) for ax in axes}
    joint = pts[list(scheme.roles["reference"])].mean(axis=0)  # centre of the tibial plateau
    for ax in axes:  # FNTS, then FTS over it (they share the proximal point), then the tibia
        a, b = by_key[ax.key]
        d = b - a
        t = float(np.dot(joint - a, d) / max(float(np.dot(d, d)), 1e-9))  # the joint's position along the axis
        ends = [a, a + max(1.0, t + 0.15) * d] if ax.key != "tibia" else [a + min(0.0, t - 0.15) * d, b]
        thin = [tuple(int(v) for v in q) for q in _fixed(ends)]
        cv2.line(img, thin[0], thin[1], COLOURS[ax.key], line, cv2.LINE_AA, SHIFT)
        thick = [tuple(int(v) for v in q) for q in _fixed([a, b])]
        cv2.line(img, thick[0], thick[1], COLOURS[ax.key], (2 if ax.key == "fts" else 3) * line, cv2.LINE_AA,
                 SHIFT)
        for q in thick:
            cv2.circle(img, q, (2 * radius) << SHIFT, COLOURS[ax.key], line, cv2.LINE_AA, SHIFT)


def _draw_header(img: np.ndarray, lines: tuple[TextLine, ...], pen: _Pen) -> None:
    y = pen.margin
    for ln in lines:
        scale = pen.scale * (1.25 if ln.emphasis else 1.0)
        thick = pen.thick + (1 if ln.emphasis else 0)
        y += int(pen.line_h * (1.25 if ln.emphasis else 1.0))
        x = pen.margin
        if ln.legend:
            cv2.line(img, (x, y - pen.text_h // 2), (x + 3 * pen.text_h, y - pen.text_h // 2),
                     COLOURS[ln.legend], max(2, 2 * pen.thick), cv2.LINE_AA)
            x += 4 * pen.text_h
        _put_text(img, ln.text, (x, y - (pen.line_h - pen.text_h) // 2), scale, COLOURS[ln.colour], thick)


@dataclass(frozen=True)
class Picture:
    """The Secondary Capture's pixels (uint8 RGB) and where the radiograph sits in them."""

    pixels: np.ndarray
    scale_x: float  # picture pixels per source pixel
    scale_y: float
    top: int  # rows of the header band above the radiograph

    def to_picture(self, points: np.ndarray) -> np.ndarray:
        """Source pixel centres ``[column, row]`` to picture pixel centres."""
        p = np.asarray(points, dtype=np.float64)
        return np.stack([(p[..., 0] + 0.5) * self.scale_x - 0.5,
                         (p[..., 1] + 0.5) * self.scale_y - 0.5 + self.top], axis=-1)


def _layout(rows: int, cols: int, lines: tuple[TextLine, ...], texts: list[str]) -> tuple[float, _Pen, int, int]:
    """(image scale, pen, header rows, footer rows): the largest scale up to the target at which the bands and
    the radiograph fit in MAX_SIDE rows (the bands shrink with the scale, so bisect when they do not fit)."""

    def bands(scale: float) -> tuple[_Pen, int, int]:
        pen = _Pen(max(1, round(cols * scale)), max(1, round(min(rows, cols) * scale)), texts)
        header = pen.margin * 2 + sum(int(pen.line_h * (1.25 if ln.emphasis else 1.0)) for ln in lines)
        return pen, header, pen.margin * 2 + pen.line_h

    def fits(scale: float) -> bool:
        _, header, footer = bands(scale)
        return round(rows * scale) + header + footer <= MAX_SIDE

    scale = min(MAX_SIDE / max(rows, cols), max(1.0, MIN_SIDE / max(rows, cols)))
    if not fits(scale):
        lo, hi = 0.0, scale
        for _ in range(20):
            lo, hi = ((lo + hi) / 2, hi) if fits((lo + hi) / 2) else (lo, (lo + hi) / 2)
        scale = lo
    return (scale, *bands(scale))


def render_overlay(source: pydicom.Dataset, result: KneePrediction | Description) -> Picture:
    """Draw the result on the source as displayed; the picture is at most MAX_SIDE pixels on its long side."""
    d = describe(result)
    shown = display_image(source)
    rows, cols = shown.shape
    lines = d.lines
    texts = [ln.text for ln in lines] + [DISCLAIMER_TEXT]
    scale, pen, header, footer = _layout(rows, cols, lines, texts)
    width, height = max(1, round(cols * scale)), max(1, round(rows * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    grey = (cv2.resize(shown, (width, height), interpolation=interp) * 255.0 + 0.5).astype(np.uint8)
    img = np.zeros((header + height + footer, width, 3), np.uint8)
    img[header:header + height] = grey[:, :, None]
    picture = Picture(img, width / cols, height / rows, header)
    _draw_graphics(img, d, picture.to_picture, max(width, height))
    if d.low_confidence:
        frame = max(3, round(max(width, height) / 250))
        cv2.rectangle(img, (0, header), (width - 1, header + height - 1), COLOURS["warning"], frame)
    _draw_header(img, lines, pen)
    _put_text(img, DISCLAIMER_TEXT, (pen.margin, img.shape[0] - pen.margin - (pen.line_h - pen.text_h) // 2),
              pen.scale, COLOURS["disclaimer"], pen.thick)
    return picture


def build_sc(source: pydicom.Dataset, result: KneePrediction | Description, *, series_uid: str | None = None,
             sop_instance_uid: str | None = None, instance_number: int = 1,
             identity: NodeIdentity | None = None,
             transfer_syntax: str = SC_TRANSFER_SYNTAXES[0]) -> pydicom.Dataset:
    """The RGB Secondary Capture of a result (a prediction or its description) drawn on ``source``, in the source's
    study, a new series, encoded in ``transfer_syntax`` (one of :data:`SC_TRANSFER_SYNTAXES`)."""
    if transfer_syntax not in SC_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported SC transfer syntax {transfer_syntax}; expected one of "
                         f"{', '.join(SC_TRANSFER_SYNTAXES)}")
    d = describe(result)
    t = target(source, d.prediction, "sc", series_uid=series_uid, sop_instance_uid=sop_instance_uid,
               identity=identity)
    pixels = render_overlay(source, d).pixels
    sc = SCImage.from_ref_dataset(
        ref_dataset=t.ref,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=t.series_uid,
        series_number=t.series_number,
        sop_instance_uid=t.sop_instance_uid,
        instance_number=instance_number,
        laterality=d.laterality,
        patient_orientation=patient_orientation(source),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=t.series_description,
        **t.equipment,
    )
    sc.copy_patient_and_study_information(t.ref)  # from_ref_dataset leaves out e.g. Study Description
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = DISCLAIMER_TEXT
    sc.DerivationDescription = "Source image rendered with KneeAlign landmarks, axes and aTFA burnt in"
    purpose = pydicom.Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = SOURCE_FOR_PROCESSING
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [item]
    set_device_uid(sc, t)
    if transfer_syntax == JPEG2000Lossless:
        compress_rgb_j2k_lossless(sc, pixels)
    return sc


def compress_rgb_j2k_lossless(ds: pydicom.Dataset, rgb: np.ndarray) -> None:
    """Encode ``ds``'s RGB pixels as JPEG 2000 Lossless with the reversible colour transform (YBR_RCT), in place.

    pydicom switches the colour transform off for RGB, so the dataset is declared YBR_RCT first, as PS3.5 8.2.4
    requires for a lossless codestream that uses it; decoders return the original RGB values.
    """
    ds.PhotometricInterpretation = "YBR_RCT"
    ds.compress(UID(JPEG2000Lossless), arr=rgb, encoding_plugin="pylibjpeg", generate_instance_uid=False)
