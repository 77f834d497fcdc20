"""Checks of result objects with real validators (dicom3tools, dcmtk, PixelMed) and with OHIF's SR loading rules.

The validators are called by absolute path; a missing one skips the test locally and fails it in CI
(``tests.conftest.require_tool``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from tests.conftest import require_tool

PIXELMED_JAR = "/usr/share/java/pixelmed.jar"
JAVA_XPATH_LIMITS = ["-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0",
                     "-Djdk.xml.xpathTotalOpLimit=0"]


@dataclass
class Report:
    """A validator's output split into error and warning lines."""

    output: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _report(output: str, error_prefix: str, warning_prefix: str) -> Report:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return Report(output, [ln for ln in lines if ln.startswith(error_prefix)],
                  [ln for ln in lines if ln.startswith(warning_prefix)])


def _run(cmd: list[str], timeout: int = 120) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)  # rc varies
    return out.stdout + out.stderr


# dicom3tools 2022 predates Device UID (0018,1002) in the Contributing Equipment Sequence (Type 3 in PS3.3
# Table C.12-1 today), which IHE AI Results uses to name the algorithm: it warns about that one attribute and then
# calls the object "Standard Extended". These two lines, and nothing else, are excused (see test_air_identity).
DEVICE_UID_IN_CONTRIBUTING_EQUIPMENT = (
    "Warning - Attribute is not present in standard DICOM IOD - (0x0018,0x1002) UI Device UID",
    "Warning - Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended "
    "SOP Class",
)


def dciodvfy(path: Path, excuse_device_uid: bool = True) -> Report:
    tool = require_tool("/usr/bin/dciodvfy")
    report = _report(_run([tool, str(path)]), "Error", "Warning")
    if excuse_device_uid:
        report.warnings = [w for w in report.warnings if w not in DEVICE_UID_IN_CONTRIBUTING_EQUIPMENT]
    return report


def dcentvfy(paths: list[Path]) -> Report:
    tool = require_tool("/usr/bin/dcentvfy")
    return _report(_run([tool, *map(str, paths)]), "Error", "Warning")


def dsrdump(path: Path) -> str:
    tool = require_tool("/usr/bin/dsrdump")
    return _run([tool, str(path)])


def dcmpschk(path: Path) -> Report:
    tool = require_tool("/usr/bin/dcmpschk")
    require_tool(tool, "--version", "dcmtk")
    return _report(_run([tool, str(path)]), "E:", "W:")


def pixelmed_sr(path: Path) -> Report:
    java = require_tool("java")
    require_tool(PIXELMED_JAR)
    cmd = [java, *JAVA_XPATH_LIMITS, "-cp", PIXELMED_JAR, "com.pixelmed.validate.DicomSRValidator", str(path)]
    return _report(_run(cmd, timeout=300), "Error", "Warning")


def _code(item: pydicom.Dataset) -> tuple[str, str]:
    c = item.ConceptNameCodeSequence[0]
    return str(c.CodeValue), str(c.CodingSchemeDesignator)


def _find(items, code: tuple[str, str]) -> list[pydicom.Dataset]:
    return [it for it in items if "ConceptNameCodeSequence" in it and _code(it) == code]


def _refs(item: pydicom.Dataset) -> list[str]:
    """SOP Instance UIDs an SCOORD (through its IMAGE child) or an IMAGE item references."""
    if item.ValueType == "IMAGE":
        return [str(r.ReferencedSOPInstanceUID) for r in item.ReferencedSOPSequence]
    return [uid for child in item.get("ContentSequence", []) if child.ValueType == "IMAGE" for uid in _refs(child)]


def ohif_sr_problems(sr: pydicom.Dataset, source_uid: str) -> list[str]:
    """What would stop OHIF v3 from showing this TID 1500 SR's measurements on the source image (empty = none).

    Mirrors cornerstone-dicom-sr's loader: root concept DCM 126000; an Image Library (111028) with an Image
    Library Group (126200) listing the source; Imaging Measurements (126010) whose groups (125007) each carry a
    Tracking Identifier (112039) and a Tracking Unique Identifier (112040); a group with a top-level SCOORD is
    read as TID 1410 (exactly one such SCOORD); otherwise every NUM must hold exactly one content item, an
    SCOORD, because the loader reads the NUM's content sequence as that single SCOORD.
    """
    problems = []
    if _code(sr) != ("126000", "DCM"):
        problems.append(f"root concept is {_code(sr)}, not (126000, DCM)")
    library = _find(sr.ContentSequence, ("111028", "DCM"))
    groups = _find(library[0].get("ContentSequence", []), ("126200", "DCM")) if library else []
    listed = [uid for g in groups for it in g.get("ContentSequence", []) if it.ValueType == "IMAGE"
              for uid in _refs(it)]
    if source_uid not in listed:
        problems.append("Image Library (111028/126200) does not list the source image")
    measurements = _find(sr.ContentSequence, ("126010", "DCM"))
    if len(measurements) != 1:
        return problems + [f"expected one Imaging Measurements container, found {len(measurements)}"]
    groups = _find(measurements[0].get("ContentSequence", []), ("125007", "DCM"))
    if not groups:
        problems.append("no Measurement Group under Imaging Measurements")
    for n, group in enumerate(groups, 1):
        items = list(group.get("ContentSequence", []))
        if len(_find(items, ("112039", "DCM"))) != 1 or len(_find(items, ("112040", "DCM"))) != 1:
            problems.append(f"group {n}: needs exactly one Tracking Identifier and one Tracking UID")
        scoords = [it for it in items if it.ValueType == "SCOORD"]
        nums = [it for it in items if it.ValueType == "NUM"]
        if scoords:  # TID 1410 path: the group's region
            if len(scoords) != 1:
                problems.append(f"group {n}: {len(scoords)} top-level SCOORDs, OHIF uses one")
            elif source_uid not in _refs(scoords[0]):
                problems.append(f"group {n}: region does not reference the source image")
            continue
        if not nums:
            problems.append(f"group {n}: no NUM measurement")
        for num in nums:
            name = num.ConceptNameCodeSequence[0].CodeMeaning
            children = list(num.get("ContentSequence", []))
            if len(children) != 1 or children[0].ValueType != "SCOORD":
                problems.append(f"group {n}, NUM {name!r}: needs exactly one content item, an SCOORD; "
                                f"has {[c.ValueType for c in children]}")
            elif source_uid not in _refs(children[0]):
                problems.append(f"group {n}, NUM {name!r}: SCOORD does not reference the source image")
            if "MeasuredValueSequence" not in num:
                problems.append(f"group {n}, NUM {name!r}: no measured value")
    return problems


def measurement_groups(sr: pydicom.Dataset) -> list[pydicom.Dataset]:
    container = _find(sr.ContentSequence, ("126010", "DCM"))[0]
    return _find(container.ContentSequence, ("125007", "DCM"))


def nums_by_meaning(sr: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    """NUM items of all measurement groups, keyed by concept name meaning."""
    out: dict[str, list[pydicom.Dataset]] = {}
    for group in measurement_groups(sr):
        for it in group.ContentSequence:
            if it.ValueType == "NUM":
                out.setdefault(str(it.ConceptNameCodeSequence[0].CodeMeaning), []).append(it)
    return out


def all_text(ds: pydicom.Dataset) -> str:
    """Every string value in a dataset, nested sequences included (for "does it say X anywhere")."""
    parts = []

    def walk(d: pydicom.Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
            elif elem.VR in ("LO", "SH", "ST", "LT", "UT", "CS", "PN"):
                parts.append(str(elem.value))

    walk(ds)
    return "\n".join(parts)
