"""KneeAlign DICOM node: receive knee radiographs, measure alignment, send the SR and overlay back."""

from importlib import metadata


def software_version() -> str:
    """The installed ``kneealign`` package version (``"unknown"`` when run from a bare checkout)."""
    try:
        return metadata.version("kneealign")
    except metadata.PackageNotFoundError:
        return "unknown"
