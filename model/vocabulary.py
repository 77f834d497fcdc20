"""The two vocabularies spelled in files, weights headers, JSON and command lines: surgical phases and network
stages. Each name is defined here once; everything else reads it from here.

- Phases: ``preop`` (a native knee) and ``postop`` (a knee with an implant); each has its own landmark scheme
  (``model/schemes/<phase>-v1.json``).
- Stages: the three networks of a bundle, ``global`` (the whole radiograph) and one ``local_<phase>`` per phase.
"""

from __future__ import annotations

from dataclasses import dataclass

PREOP = "preop"
POSTOP = "postop"


@dataclass(frozen=True)
class Phase:
    name: str  # as stored, e.g. "preop"
    word: str  # in running text, e.g. "pre-op"
    title: str  # in headings and tables, e.g. "Pre-operative"
    has_implants: bool


PHASES: dict[str, Phase] = {p.name: p for p in (
    Phase(PREOP, "pre-op", "Pre-operative", has_implants=False),
    Phase(POSTOP, "post-op", "Post-operative", has_implants=True),
)}
PHASE_NAMES = tuple(PHASES)


def _named(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; expected one of {tuple(table)}") from None


def phase(name: str) -> Phase:
    """The phase called ``name``; ValueError naming the known ones otherwise."""
    return _named(PHASES, name, "phase")


GLOBAL_STAGE = "global"


@dataclass(frozen=True)
class Stage:
    name: str  # as stored, e.g. "local_preop"
    phase: str | None  # the phase a local stage's network is for; None for the global search
    meaning: str


def local_stage(phase_name: str) -> str:
    """The name of the local stage of a phase, e.g. ``local_stage("preop") == "local_preop"``."""
    return f"local_{phase(phase_name).name}"


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage(GLOBAL_STAGE, None, "whole radiograph: the two reference points, right-knee and implant logits"),
    *(Stage(local_stage(p.name), p.name, f"{p.word} landmarks in the frame fixed by the reference points")
      for p in PHASES.values()),
)}
STAGE_NAMES = tuple(STAGES)


def stage(name: str) -> Stage:
    """The stage called ``name``; ValueError naming the known ones otherwise."""
    return _named(STAGES, name, "stage")
