"""Turn a trained bundle into a release: a new version name and, optionally, float16 storage (half the file).

The exported file is a different file: its model card keeps the training record of the source (its
``training_steps`` gain the export itself) but not its metrics (they were measured on the source's weights) and names
the source by file, version and SHA-256. Measure the export with ``knee-train evaluate --update-card`` before
shipping it.
"""

from __future__ import annotations

import re
from pathlib import Path

from model.weights import load_bundle, save_bundle

# A version as the outputs carry it (DICOM Software Versions, the status page): short, no spaces or control characters.
_VERSION = re.compile(r"[0-9A-Za-z.+-]{1,32}")
# Card entries that describe the file itself, not its training: rewritten on export.
_PER_FILE = ("metrics", "weights_file", "exported_from", "stored_as")


def export_bundle(source: str | Path, target: str | Path, version: str | None = None,
                  float16: bool = False) -> Path:
    """Write ``source``'s networks to ``target`` (and its card beside it); returns ``target``."""
    source, target = Path(source), Path(target)
    if version is not None and not _VERSION.fullmatch(version):
        raise ValueError(f"version {version!r}: use up to 32 letters, digits, '.', '+' or '-' (e.g. 2.5.0)")
    if source.resolve() == target.resolve():
        raise ValueError("export to a new file: the source's card and metrics describe the source")
    bundle = load_bundle(source)
    origin = {"file": str(source), "version": bundle.version, "sha256": bundle.sha256}
    header_keys = set(bundle.header())
    bundle.card = {k: v for k, v in bundle.card.items() if k not in header_keys and k not in _PER_FILE}
    bundle.card["exported_from"] = origin
    command = f"knee-train export {source} {target}" + (f" --version {version}" if version else "") \
        + (" --float16" if float16 else "")
    step = {"command": command}
    if float16:
        step["note"] = "weights stored at float16; the networks compute in float32"
    bundle.card["training_steps"] = list(bundle.card.get("training_steps") or []) + [step]
    if version is not None:
        bundle.version = version
    return save_bundle(bundle, target, float16=float16)
