"""One image through the pipeline, the same for the service's workers and ``dicomnode process``: select it,
run the model, build the result objects. Nothing here touches the database or the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydicom

from dicomnode.vocabulary import kind_of
from model.preprocess import UndecodableImage, UnsupportedImage
from model.result import KneePrediction
from model.selection import skip_reason

STATUS_SKIPPED = "skipped"
STATUS_ERROR = "error"

class Predictor(Protocol):
    """What the pipeline needs of ``model.inference.KneeAligner``."""

    def predict(self, ds: pydicom.Dataset) -> KneePrediction: ...


@dataclass
class Analysis:
    """What became of one image: skipped (with the reason), or a prediction and its result objects."""

    sop_instance_uid: str
    status: str  # "ok" | "low_confidence" | "skipped"
    reason: str | None = None
    prediction: KneePrediction | None = None
    outputs: list[pydicom.Dataset] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready line: the SOP Instance UID, then the prediction's summary (or status and reason)."""
        line: dict[str, Any] = {"sop_instance_uid": self.sop_instance_uid}
        if self.prediction is not None:
            line.update(self.prediction.to_json())
        else:
            line.update(status=self.status, reason=self.reason)
        if self.outputs:
            line["outputs"] = [{"kind": kind_of(ds), "sop_instance_uid": str(ds.SOPInstanceUID)}
                               for ds in self.outputs]
        return line


def predict(ds: pydicom.Dataset, predictor: Predictor) -> Analysis:
    """Select and predict (no result objects yet). Images that are not knee AP/PA radiographs, or that the model
    cannot use, come back skipped; pixel data that cannot be decoded, and any other problem, raise."""
    uid = str(ds.get("SOPInstanceUID", ""))
    reason = skip_reason(ds)
    if reason is not None:
        return Analysis(uid, STATUS_SKIPPED, reason)
    try:
        prediction = predictor.predict(ds)
    except UndecodableImage:
        raise  # a broken or undecodable image is a failure, not an image that is not for us
    except UnsupportedImage as exc:
        return Analysis(uid, STATUS_SKIPPED, f"unusable image: {exc}")
    return Analysis(uid, prediction.status, None, prediction)


def build(analysis: Analysis, ds: pydicom.Dataset, kinds: Sequence[str]) -> Analysis:
    """Add the result objects of ``kinds`` to a predicted (not skipped) analysis."""
    from dicomnode.outputs import (
        build_outputs,  # heavy (highdicom, drawing): only when an image is processed
    )

    if analysis.prediction is not None:
        analysis.outputs = list(build_outputs(ds, analysis.prediction, kinds=tuple(kinds)))
    return analysis


def analyse(ds: pydicom.Dataset, predictor: Predictor, kinds: Sequence[str]) -> Analysis:
    """Select, predict and build (see :func:`predict` and :func:`build`)."""
    return build(predict(ds, predictor), ds, kinds)
