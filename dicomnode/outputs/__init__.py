"""The DICOM objects the node sends back to the PACS for one measured image: SR, Secondary Capture, GSPS.

    datasets = build_outputs(source, prediction, kinds=("sr", "sc"))   # [SR, SC], each in a new series

The result is described once (:mod:`.description`: words, codes, arms, lines, colours) and every builder reads that
description.

Kinds, with their SOP class, series and builder: ``dicomnode.vocabulary.OUTPUT_KINDS`` ("sr", "landmarks", "sc",
"gsps").

Each object lands in the source's study, in a series of its own, and says who made it (the node as device
observer / contributing equipment, the model's name and version). See sr.py, sc.py and gsps.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pydicom

from dicomnode.outputs.common import KINDS, NodeIdentity, OutputError
from dicomnode.outputs.description import Description, describe
from dicomnode.outputs.gsps import build_gsps
from dicomnode.outputs.sc import build_sc
from dicomnode.outputs.sr import build_sr
from dicomnode.outputs.sr_landmarks import build_landmarks_sr
from dicomnode.vocabulary import OUTPUT_KINDS, kind_of, output_kind
from model.result import KneePrediction


def build_outputs(source: pydicom.Dataset, prediction: KneePrediction, kinds: Iterable[str] = ("sr", "sc"),
                  identity: NodeIdentity | None = None) -> list[pydicom.Dataset]:
    """The requested result objects, always in the order of :data:`KINDS` (duplicates ignored)."""
    wanted = {output_kind(kind).name for kind in kinds}
    description = describe(prediction)
    with warnings.catch_warnings():
        # highdicom warns about single-component person names by quoting the name: patient data must not reach
        # stderr or the logs. The name is copied unchanged into the results, as received.
        warnings.filterwarnings("ignore", message=r"The string .* unlikely to represent the intended person name")
        return [kind.builder(source, description, identity=identity) for kind in OUTPUT_KINDS.values()
                if kind.name in wanted]


__all__ = ["KINDS", "Description", "NodeIdentity", "OutputError", "build_gsps", "build_landmarks_sr", "build_outputs",
           "build_sc", "build_sr", "describe", "kind_of"]
