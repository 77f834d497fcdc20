"""The node's vocabularies, each defined once and read by the configuration, the CLI, the pipeline and the outputs: the
kinds of result objects (with their SOP class, series, description and builder). The other vocabularies have one
home each too: surgical phases and network stages in ``model.vocabulary`` (shared with training), the images the
method is for (DX and CR knee AP views, by attributes and SOP class) in ``model.selection``, the states of
instances, jobs and deliveries with their meanings on their tables in ``dicomnode.db.models``. Light on purpose:
importing it loads no builder (a builder is imported when it is first asked for)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OutputKind:
    """One kind of result object: its SOP class, the series it gets in the source's study, and its builder."""

    name: str
    sop_class_uid: str
    series_number: int  # high numbers keep the results after the acquired series in a viewer
    series_description: str
    builder_path: str  # "module:function", called as function(source, description, identity=...)
    meaning: str

    @property
    def builder(self) -> Callable[..., Any]:
        module, _, function = self.builder_path.partition(":")
        return getattr(importlib.import_module(module), function)


OUTPUT_KINDS: dict[str, OutputKind] = {kind.name: kind for kind in (  # also the order in which they are built
    OutputKind("sr", "1.2.840.10008.5.1.4.1.1.88.33", 9901, "KneeAlign aTFA report",
               "dicomnode.outputs.sr:build_sr", "the measurement report (TID 1500)"),
    OutputKind("landmarks", "1.2.840.10008.5.1.4.1.1.88.33", 9904, "KneeAlign landmark detail",
               "dicomnode.outputs.sr_landmarks:build_landmarks_sr", "every landmark as a point (optional)"),
    OutputKind("sc", "1.2.840.10008.5.1.4.1.1.7", 9902, "KneeAlign aTFA overlay",
               "dicomnode.outputs.sc:build_sc", "the overlay picture, JPEG 2000 Lossless"),
    OutputKind("gsps", "1.2.840.10008.5.1.4.1.1.11.1", 9903, "KneeAlign aTFA presentation",
               "dicomnode.outputs.gsps:build_gsps", "the lines and labels as a presentation state (optional)"),
)}
OUTPUT_KIND_NAMES = tuple(OUTPUT_KINDS)
DEFAULT_OUTPUTS = ("sr", "sc")


def output_kind(name: str) -> OutputKind:
    """The kind called ``name``; ValueError naming the known ones otherwise."""
    try:
        return OUTPUT_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown output kind {name!r}; expected one of {', '.join(OUTPUT_KIND_NAMES)}") from None


def kind_of_object(sop_class_uid: str, series_number: int | None) -> str:
    """The kind of a result object this node built (by SOP class and series number); ValueError otherwise."""
    for kind in OUTPUT_KINDS.values():
        if kind.sop_class_uid == sop_class_uid and series_number is not None and series_number == kind.series_number:
            return kind.name
    raise ValueError(f"not a KneeAlign output: SOP class {sop_class_uid}, series number {series_number}")


def kind_of(ds: Any) -> str:
    """The kind of a result object (a pydicom Dataset) this node built; ValueError otherwise."""
    number = ds.get("SeriesNumber")
    return kind_of_object(str(ds.get("SOPClassUID", "")), int(number) if number is not None else None)
