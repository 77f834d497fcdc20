"""From a pydicom dataset to the normalised image the network sees, and the resampling both stages use.

- Pixel data is decoded through pydicom's plugins (pylibjpeg/openjpeg/RLE for compressed transfer syntaxes).
- Modality LUT (rescale) is applied; a non-linear VOI LUT *sequence* is applied too; a linear window
  (WindowCenter/Width) is not, because percentile clipping replaces it and keeps training and inference identical.
- MONOCHROME1 is inverted so that bone is always bright; intensities are clipped at the 0.5 and 99.5 percentiles
  and scaled to [0, 1].
- Pixel spacing comes from PixelSpacing, else ImagerPixelSpacing; laterality from ImageLaterality, else Laterality.
  The spacing's source is kept: a PixelSpacing that only repeats ImagerPixelSpacing without a calibration type is
  still the detector's spacing (no magnification correction), and widths in millimetres say so.

Training uses exactly these functions (``normalize_image``, ``letterbox``, ``warp_to_frame``); inference cuts its
frames with ``FrameSampler``, the same resampling with each downsampling of the radiograph made once.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from model.frames import FrameSpec


class UnsupportedImage(ValueError):
    """The dataset cannot be used as a knee radiograph (no pixels, colour, multi-frame, undecodable...)."""


class UndecodableImage(UnsupportedImage):
    """The pixel data cannot be decoded (corrupt, or no decoder for its transfer syntax). The message names the
    transfer syntax and the decoder's exception type, never the decoder's own text."""




@dataclass
class Radiograph:
    image: np.ndarray  # float32 (rows, cols) in [0, 1], bone bright
    pixel_spacing_mm: tuple[float, float] | None  # (row, column)
    laterality_tag: str | None  # "L", "R" or None
    photometric: str
    sop_instance_uid: str | None = None
    pixel_spacing_source: str | None = None  # "PixelSpacing" (calibrated) or "ImagerPixelSpacing" (the detector's)


def normalize_image(pixels: np.ndarray, photometric: str = "MONOCHROME2",
                    low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Stored (or modality-LUT) values to float32 [0, 1], bone bright, percentiles clipped."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2:
        raise UnsupportedImage(f"expected a single-frame greyscale image, got pixel array of shape {arr.shape}")
    sample = arr[::4, ::4] if arr.size > 1_000_000 else arr
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    if not np.isfinite(hi - lo) or hi - lo < 1e-6:
        raise UnsupportedImage("image is blank (no intensity variation)")
    out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32, copy=False)


def _laterality(ds: pydicom.Dataset) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def _pair(ds: pydicom.Dataset, keyword: str) -> tuple[float, float] | None:
    value = ds.get(keyword)
    if value is None or isinstance(value, (str, bytes)) or len(value) != 2:
        return None
    try:
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col) else None


def _spacing(ds: pydicom.Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """``((row, column) mm, source)``: PixelSpacing when present and valid, else ImagerPixelSpacing. A PixelSpacing
    equal to ImagerPixelSpacing without PixelSpacingCalibrationType is reported as the detector's."""
    pixel, imager = _pair(ds, "PixelSpacing"), _pair(ds, "ImagerPixelSpacing")
    if pixel is not None:
        calibrated = bool(str(ds.get("PixelSpacingCalibrationType", "") or "").strip())
        if imager is not None and not calibrated and np.allclose(pixel, imager, rtol=1e-6):
            return pixel, "ImagerPixelSpacing"
        return pixel, "PixelSpacing"
    if imager is not None:
        return imager, "ImagerPixelSpacing"
    return None, None


def _syntax_name(ds: pydicom.Dataset) -> str:
    """The transfer syntax's name if pydicom knows it, else "unknown" (never the received UID text)."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    name = uid.name if uid is not None else ""
    return name if name and name != str(uid) else "unknown"


def load_radiograph(ds: pydicom.Dataset) -> Radiograph:
    """Decode and normalise a pydicom dataset; raises ``UnsupportedImage`` with the reason."""
    if "PixelData" not in ds:
        raise UnsupportedImage("dataset has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImage("photometric interpretation is not greyscale (MONOCHROME1 or MONOCHROME2)")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise UnsupportedImage("multi-frame images are not supported")
    try:
        stored = ds.pixel_array
    except BaseException as exc:  # decoder missing, corrupt pixel data, or a native decoder's panic
        if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)):  # pyo3's PanicException is a
            raise  # BaseException; running out of memory is not a property of the image
        raise UndecodableImage(f"cannot decode pixel data (transfer syntax {_syntax_name(ds)}): "
                               f"{type(exc).__name__}") from exc
    values = apply_modality_lut(stored, ds)
    if "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds, prefer_lut=True)
    spacing, spacing_source = _spacing(ds)
    return Radiograph(
        image=normalize_image(values, photometric),
        pixel_spacing_mm=spacing,
        laterality_tag=_laterality(ds),
        photometric=photometric,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")) or None,
        pixel_spacing_source=spacing_source,
    )


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine ``outer ∘ inner``."""
    a = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return a[:2]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit the whole image into a ``size`` x ``size`` square (area resampling, zero padding, centred).

    Returns the square and the 2x3 matrix from image pixels to square pixels.
    """
    h, w = image.shape
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    px, py = (size - nw) // 2, (size - nh) // 2
    out = np.zeros((size, size), dtype=np.float32)
    out[py:py + nh, px:px + nw] = small
    sx, sy = nw / w, nh / h  # cv2.resize maps x to (x + 0.5) * sx - 0.5
    matrix = np.array([[sx, 0, 0.5 * sx - 0.5 + px], [0, sy, 0.5 * sy - 0.5 + py]])
    return out, matrix


def _downsample(image: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape
    nw, nh = max(1, round(w / factor)), max(1, round(h / factor))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = nw / w, nh / h
    return small, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])


class FrameSampler:
    """Frames cut from one image (``warp_to_frame``), each area-averaged downsampling of the image made once.

    One reading cuts several frames from a radiograph (implant stage, landmark stage, phase check, refinement), most
    of them at the same reduction; the downsampling is a pass over the whole image, which on a full-resolution
    radiograph costs more than the warp itself. The frames are the same as ``warp_to_frame``'s, bit for bit.
    """

    def __init__(self, image: np.ndarray, mirror_of: FrameSampler | None = None):
        self.image = image
        self._downsampled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._mirror: FrameSampler | None = None
        # the sampler this one mirrors, weakly: a cycle would keep both images alive until the garbage collector ran
        self._mirror_of = weakref.ref(mirror_of) if mirror_of is not None else None

    @classmethod
    def of(cls, image: np.ndarray | FrameSampler) -> FrameSampler:
        """``image``'s sampler: itself when it is one already (so that the frames of one reading share its
        downsamplings), else a new one."""
        return image if isinstance(image, FrameSampler) else cls(image)

    def mirrored(self) -> FrameSampler:
        """The sampler of the image mirrored left-right, made once; a mirror's own mirror is the sampler it was made
        from (so a right knee's left view and the mirrored copy of a left knee share their downsamplings with the
        image they came from)."""
        origin = self._mirror_of() if self._mirror_of is not None else None
        if origin is not None:
            return origin
        if self._mirror is None:
            self._mirror = FrameSampler(np.ascontiguousarray(self.image[:, ::-1]), mirror_of=self)
        return self._mirror

    def frame(self, matrix: np.ndarray, spec: FrameSpec) -> np.ndarray:
        """Resample the image into the frame given by ``matrix`` (image px -> frame px), anti-aliased: large
        reductions first go through an area-averaged downsampling so the bilinear warp does not alias."""
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        factor = int(np.floor(1.0 / max(scale, 1e-6) / 1.5))
        image = self.image
        if factor >= 2:
            if factor not in self._downsampled:
                self._downsampled[factor] = _downsample(self.image, factor)
            image, down = self._downsampled[factor]
            matrix = compose(matrix, np.linalg.inv(np.vstack([down, [0, 0, 1]]))[:2])
        return cv2.warpAffine(image, matrix, (spec.width_px, spec.height_px), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def warp_to_frame(image: np.ndarray, matrix: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Resample ``image`` into the frame given by ``matrix`` (image px -> frame px), anti-aliased (one frame; for
    several from one image, ``FrameSampler``)."""
    return FrameSampler(image).frame(matrix, spec)


def to_network_input(image: np.ndarray) -> np.ndarray:
    """Centre a [0, 1] image for the network (shared by training and inference)."""
    return ((image - 0.5) / 0.25).astype(np.float32, copy=False)
