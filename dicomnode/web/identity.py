"""Which model the node runs, for the status page and ``kneealign_info``: the model card of the configured
weights (read from the card JSON beside them, without loading the networks), and the not-for-clinical-use line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from model.shipped import SHIPPED_WEIGHTS  # torch-free: the main process never loads PyTorch for this page

NOT_FOR_CLINICAL_USE = ("Not for clinical use. Results say nothing about accuracy on real patients until the "
                        "model is validated on annotated images of your site (docs/training.md).")


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    training_data_kind: str
    training_data: str
    weights_file: str
    problem: str | None = None  # why the card could not be read


def model_card(weights: Path | None) -> ModelCard:
    """The card of ``weights`` (None: the shipped weights); never raises, an unreadable card says why."""
    path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    try:
        card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return ModelCard("unknown", "unknown", "unknown", "", str(path), f"model card unreadable: {exc}")
    return ModelCard(str(card.get("name", "unknown")), str(card.get("version", "unknown")),
                     str(card.get("training_data_kind", "unknown")), str(card.get("training_data", "")),
                     str(path))
