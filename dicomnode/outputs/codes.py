"""Coded concepts used in the node's results: standard SCT/DCM/UCUM codes and the project's private scheme.

PS3.16 has no code for the anatomical tibiofemoral angle (nor for varus/valgus), so the two methods, the result
status and a few labels are coded in a private scheme whose designator starts with "99", as PS3.3 8.2 asks,
and every object that uses it lists it in its Coding Scheme Identification Sequence (``CODING_SCHEME``).

A low-confidence angle is recorded under its own concept name ("aTFA (FNTS) LOW CONFIDENCE"), not under the
plain one: every SR renderer (dsrdump, PACS text views, OHIF's label over the image, which shows a NUM as
"concept name: value unit") then shows the warning next to the number, and a consumer that looks for the plain
aTFA codes cannot pick up an unreliable value by mistake. The name is kept short so that OHIF's label, drawn
beside the knee, still fits on screen with its value; the group's status note says "not a valid measurement".

The knee alignment panel (``model.measurements``: JLCA, aLDFA, MPTA, joint space widths, component angles and
their varus/valgus) has no PS3.16 codes either: each is a private code of the same scheme, with a LOW CONFIDENCE
twin (``panel_code``); units (UCUM deg, mm) and finding sites are standard.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from model.alignment import check_method
from model.vocabulary import phase as phase_of

SCHEME_DESIGNATOR = "99KNEEALIGN"
CODING_SCHEME = CodingSchemeIdentificationItem(
    designator=SCHEME_DESIGNATOR,
    name="KneeAlign private codes",
    version="1",
    responsible_organization="KneeAlign project",
)


def _private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=SCHEME_DESIGNATOR, meaning=meaning, scheme_version="1")


ATFA_FTS = _private("ATFA-FTS", "aTFA (FTS)")
ATFA_FNTS = _private("ATFA-FNTS", "aTFA (FNTS)")
ATFA_FTS_LOW = _private("ATFA-FTS-LC", "aTFA (FTS) LOW CONFIDENCE")
ATFA_FNTS_LOW = _private("ATFA-FNTS-LC", "aTFA (FNTS) LOW CONFIDENCE")
RESULT_STATUS = _private("RESULT-STATUS", "Result status")
STATUS_CONFIDENT = _private("STATUS-OK", "Confidence at or above threshold")
STATUS_LOW_CONFIDENCE = _private("STATUS-LOWCONF", "Low confidence: not a valid measurement")
STATUS_NOTE = _private("STATUS-NOTE", "Result status note")
SURGICAL_PHASE = _private("PHASE", "Surgical phase")
LATERALITY_SOURCE = _private("LAT-SOURCE", "Laterality determined from")
PIXEL_SPACING_USED = _private("SPACING-USED", "Pixel spacing used")
SHAFT_LEVELS = _private("SHAFT-LEVELS", "Shaft levels of the axes")
RESULT_CONFIDENCE = _private("RESULT-CONF", "Result confidence")
LANDMARK_CONFIDENCE = _private("LMK-CONF", "Mean landmark confidence")
ANALYSED_REGION = _private("ANALYSED-REGION", "Region analysed by the algorithm")
LANDMARK_OUTLINE = _private("LMK-OUTLINE", "Landmark outline")
DISCLAIMER = _private("DISCLAIMER", "Intended use")

MEASUREMENT_NOTE = _private("MEAS-NOTE", "Measurement note")
# name -> (code value, meaning): short meanings, so that OHIF's label of a group (one line per NUM) fits
PANEL = {
    "jlca": ("JLCA", "JLCA"),
    "aldfa": ("ALDFA", "aLDFA"),
    "mpta": ("MPTA", "MPTA"),
    "jsw_medial": ("JSW-MED", "JSW medial"),
    "jsw_lateral": ("JSW-LAT", "JSW lateral"),
    "femoral_component": ("FEM-COMP", "Femoral component angle"),
    "tibial_component": ("TIB-COMP", "Tibial component angle"),
    "femoral_component_varus_valgus": ("FEM-COMP-VV", "Femoral comp. valgus(+)/varus(-)"),
    "tibial_component_varus_valgus": ("TIB-COMP-VV", "Tibial comp. valgus(+)/varus(-)"),
}
PANEL_CODES = {name: (_private(value, meaning), _private(f"{value}-LC", f"{meaning} LOW CONFIDENCE"))
               for name, (value, meaning) in PANEL.items()}

# Standard codes (PS3.16 / SNOMED CT / UCUM)
KNEE_JOINT = codes.SCT.KneeJoint
LATERALITY = codes.SCT.Laterality
LEFT = codes.SCT.Left
RIGHT = codes.SCT.Right
FEMUR = codes.SCT.Femur
TIBIA = codes.SCT.Tibia
FIBULA = codes.SCT.Fibula
PRE_OPERATIVE = codes.SCT.Preoperative
POST_OPERATIVE = codes.SCT.Postoperative
IMAGING_PROCEDURE = codes.SCT.ImagingProcedure
ARM_OF_ANGLE = codes.DCM.ArmOfAngle
DEVICE = codes.DCM.Device
PROCESSING_EQUIPMENT = codes.DCM.ProcessingEquipment
DEGREE = codes.UCUM.Degree
MILLIMETRE = codes.UCUM.Millimeter
PERCENT = codes.UCUM.Percent

BONE_SITES = {"femur": FEMUR, "tibia": TIBIA, "fibula": FIBULA}


def angle_code(method: str, low_confidence: bool) -> CodedConcept:
    """Concept name of an aTFA measurement; ``method`` is "fts" or "fnts"."""
    check_method(method)  # ValueError for an unknown method
    table = {("fts", False): ATFA_FTS, ("fnts", False): ATFA_FNTS,
             ("fts", True): ATFA_FTS_LOW, ("fnts", True): ATFA_FNTS_LOW}
    return table[(method, bool(low_confidence))]


def panel_code(name: str, low_confidence: bool) -> CodedConcept:
    """Concept name of a panel measurement (a key of :data:`PANEL`), its LOW CONFIDENCE twin when flagged."""
    try:
        return PANEL_CODES[name][1 if low_confidence else 0]
    except KeyError:
        raise ValueError(f"unknown panel measurement {name!r}; expected one of {', '.join(PANEL)}") from None


def laterality_code(laterality: str):
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    return LEFT if laterality == "L" else RIGHT


def phase_code(phase: str):
    return POST_OPERATIVE if phase_of(phase).has_implants else PRE_OPERATIVE  # ValueError for an unknown phase
