"""The two vocabularies spelled in files, weights headers, JSON and command lines: surgical phases and network
stages. Each name is defined here once; everything else reads it from here.

- Phases: ``preop`` (a native knee) and ``postop`` (a knee with an implant); each has its own landmark scheme
  (``model/schemes/<phase>-v1.json``).
- Stages: the networks of a bundle, ``global`` (the whole radiograph), one ``local_<phase>`` per phase, and the
  optional ``implant`` stage (the pre/post-op decision from the joint in the reference frame; bundles without it
  decide with the global stage's implant logit).
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
IMPLANT_STAGE = "implant"


@dataclass(frozen=True)
class Stage:
    name: str  # as stored, e.g. "local_preop"
    phase: str | None  # the phase a local stage's network is for; None for the global and implant stages
    meaning: str
    aux: tuple[str, ...] = ()  # the network's auxiliary logits, in order (each a probability of "<name>")
    required: bool = True  # every bundle has it (an optional stage has a fallback in inference)


def local_stage(phase_name: str) -> str:
    """The name of the local stage of a phase, e.g. ``local_stage("preop") == "local_preop"``."""
    return f"local_{phase(phase_name).name}"


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage(GLOBAL_STAGE, None, "whole radiograph: the two reference points, right-knee and implant logits",
          aux=("right", "implant")),
    *(Stage(local_stage(p.name), p.name, f"{p.word} landmarks in the frame fixed by the reference points")
      for p in PHASES.values()),
    Stage(IMPLANT_STAGE, None, "the joint in the frame fixed by the reference points: the reference points and an "
          "implant logit", aux=("implant",), required=False),
)}
STAGE_NAMES = tuple(STAGES)  # in training order
REQUIRED_STAGES = tuple(s.name for s in STAGES.values() if s.required)


def stage(name: str) -> Stage:
    """The stage called ``name``; ValueError naming the known ones otherwise."""
    return _named(STAGES, name, "stage")
