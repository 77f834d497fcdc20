"""The source image as a viewer would show it: decoded, modality LUT, VOI LUT or window, polarity.

Decoding goes through pydicom's ``pixel_array`` (compressed transfer syntaxes via the pylibjpeg plugins), then
pydicom's own modality and VOI helpers. Without any VOI in the source a window covering the 0.5th to 99.5th
percentile of the modality values is used (the same one the presentation state records).
"""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from dicomnode.outputs.common import OutputError

AUTO_WINDOW_PERCENTILES = (0.5, 99.5)


def modality_values(source: pydicom.Dataset) -> np.ndarray:
    """Stored values after the Modality LUT (rescale), as float32; raises OutputError naming the problem."""
    if "PixelData" not in source:
        raise OutputError("source image has no pixel data")
    if int(source.get("NumberOfFrames", 1) or 1) != 1:
        raise OutputError("multi-frame source images are not supported")
    photometric = str(source.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise OutputError("source photometric interpretation is not greyscale (MONOCHROME1 or MONOCHROME2)")
    try:
        stored = source.pixel_array
    except Exception as exc:  # missing decoder, corrupt data; the decoder's text is not kept (it may quote values)
        raise OutputError(f"cannot decode the source pixel data ({type(exc).__name__})") from exc
    return np.asarray(apply_modality_lut(stored, source), dtype=np.float32)


def auto_window(values: np.ndarray) -> tuple[float, float]:
    """(centre, width) covering the central 99 % of ``values``."""
    lo, hi = np.percentile(values[::4, ::4], AUTO_WINDOW_PERCENTILES)
    width = max(float(hi - lo), 1.0)
    return float(lo) + width / 2.0, width


def has_voi(source: pydicom.Dataset) -> bool:
    return "VOILUTSequence" in source or ("WindowCenter" in source and "WindowWidth" in source)


def _voi_output_range(source: pydicom.Dataset) -> tuple[float, float]:
    """The lowest and highest value the source's VOI transformation can output."""
    if "VOILUTSequence" in source:
        first_map, entries = int(source.VOILUTSequence[0].LUTDescriptor[1]), int(
            source.VOILUTSequence[0].LUTDescriptor[0] or 65536)
        lut = apply_voi_lut(np.arange(first_map, first_map + entries), source, prefer_lut=True)
        return float(lut.min()), float(lut.max())
    probe = apply_voi_lut(np.array([-1e30, 1e30]), source, prefer_lut=False)
    return float(probe.min()), float(probe.max())


def display_image(source: pydicom.Dataset, values: np.ndarray | None = None) -> np.ndarray:
    """Greyscale in [0, 1] with 1 = white, as the source should be displayed (MONOCHROME1 inverted)."""
    values = modality_values(source) if values is None else values
    if "VOILUTSequence" in source:  # a lookup table is indexed by integer values
        lo, hi = _voi_output_range(source)
        shown = apply_voi_lut(np.rint(values).astype(np.int64), source, prefer_lut=True).astype(np.float32)
    elif has_voi(source):
        lo, hi = _voi_output_range(source)
        shown = apply_voi_lut(values, source, prefer_lut=False).astype(np.float32)
    else:
        centre, width = auto_window(values)
        lo, hi = centre - width / 2.0, centre + width / 2.0
        shown = values
    out = np.clip((shown - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    if str(source.PhotometricInterpretation) == "MONOCHROME1":
        out = 1.0 - out
    return out
