"""One image through the pipeline, the same for the service's workers and ``dicomnode process``: select it,
run the model, build the result objects. Nothing here touches the database or the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydicom

from dicomnode.process.selection import skip_reason
from model.preprocess import UnsupportedImage
from model.result import KneePrediction

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
            line["outputs"] = [{"kind": output_kind(ds), "sop_instance_uid": str(ds.SOPInstanceUID)}
                               for ds in self.outputs]
        return line


def output_kind(ds: pydicom.Dataset) -> str:
    """"sr", "landmarks", "sc" or "gsps" for an object this node built; ValueError for anything else."""
    from dicomnode.outputs.common import kind_of

    return kind_of(ds)


def analyse(ds: pydicom.Dataset, predictor: Predictor, kinds: Sequence[str]) -> Analysis:
    """Select, predict and build. Images that are not knee AP/PA radiographs, or that the model cannot use,
    come back skipped; any other problem raises (the caller records an error or retries)."""
    from dicomnode.outputs import (
        build_outputs,  # heavy (highdicom, drawing): only when an image is processed
    )

    uid = str(ds.get("SOPInstanceUID", ""))
    reason = skip_reason(ds)
    if reason is not None:
        return Analysis(uid, STATUS_SKIPPED, reason)
    try:
        prediction = predictor.predict(ds)
    except UnsupportedImage as exc:
        return Analysis(uid, STATUS_SKIPPED, f"unusable image: {exc}")
    outputs = build_outputs(ds, prediction, kinds=tuple(kinds))
    return Analysis(uid, prediction.status, None, prediction, list(outputs))
