"""What one prediction returns: landmarks, phase, laterality, both angles with their axes, confidence, timings, and
the measurement panel (``model.measurements``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.alignment import AlignmentResult
from model.measurements import Measurement

STATUS_OK = "ok"
STATUS_LOW_CONFIDENCE = "low_confidence"


@dataclass
class KneePrediction:
    """Result for one AP knee radiograph, all coordinates ``[column, row]`` in the source image's pixels."""

    landmarks: np.ndarray  # (N, 2) float, source pixels
    landmark_confidence: np.ndarray  # (N,) in [0, 1]
    scheme_id: str  # e.g. "kneealign-preop@1.0"
    phase: str  # one of model.vocabulary.PHASE_NAMES
    phase_probability: float  # the implant stage's probability of an implant (post-op); see model.inference
    laterality: str  # "L" | "R"
    laterality_source: str  # "tag" (the DICOM tag, always used when present) or "image" (no tag)
    alignment: AlignmentResult
    confidence: float  # whole-result confidence in [0, 1]
    confidence_threshold: float
    pixel_spacing_mm: tuple[float, float] | None  # (row, column) spacing, None when unknown
    reference_length_px: float
    model_name: str
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    laterality_probability: float = 1.0  # the image's own probability for the side its reference points read
    # Copies measured for consistency: name -> {"FNTS": deg, "FTS": deg} differences from this result (None: failed)
    consistency: dict[str, dict | None] = field(default_factory=dict)
    # The measurement panel: name -> Measurement, in panel order (the aTFA always, the rest as configured)
    measurements: dict[str, Measurement] = field(default_factory=dict)
    model_sha256: str | None = None  # SHA-256 of the weights file (None: weights not loaded from a file)
    pixel_spacing_source: str | None = None  # "PixelSpacing", "ImagerPixelSpacing", or None (no spacing)
    # How far the final plateau corners lie from the global stage's ("global") and from those that built the final
    # frame ("frame": the local stage's first pass when refining), in plateau widths (the larger of the two corners)
    reference_shift: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return STATUS_OK if self.confidence >= self.confidence_threshold else STATUS_LOW_CONFIDENCE

    @property
    def low_confidence(self) -> bool:
        return self.status == STATUS_LOW_CONFIDENCE

    def to_json(self) -> dict:
        """A JSON-ready summary (the ``dicomnode process`` line, without the SOP Instance UID)."""
        out = {
            "laterality": self.laterality,
            "laterality_source": self.laterality_source,
            "laterality_probability": round(self.laterality_probability, 4),
            "phase": self.phase,
            "phase_probability": round(self.phase_probability, 4),
            "scheme": self.scheme_id,
            "confidence": round(self.confidence, 4),
            "confidence_threshold": self.confidence_threshold,
            "status": self.status,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "pixel_spacing_source": self.pixel_spacing_source,
            "reference_length_px": round(self.reference_length_px, 2),
            "model": {"name": self.model_name, "version": self.model_version, "sha256": self.model_sha256},
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "warnings": list(self.warnings),
            "consistency": self.consistency,
            "reference_shift": {k: round(v, 4) for k, v in self.reference_shift.items()},
        }
        align = self.alignment.as_dict()
        out["atfa_fts_deg"] = round(align.pop("atfa_fts_deg"), 2)
        out["atfa_fnts_deg"] = round(align.pop("atfa_fnts_deg"), 2)
        out["axes"] = align["axes"]
        out["shaft_levels"] = align["shaft_levels"]
        out["measurements"] = {name: m.to_json() for name, m in self.measurements.items()}
        out["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]
        return out
