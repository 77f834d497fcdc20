"""The shipped weights' model card (the JSON beside them, which the node's status page and ``kneealign_info`` show)
describes exactly the shipped file: same header, same file name, synthetic training data, measured metrics."""

from __future__ import annotations

import json

from safetensors import safe_open

from model.weights import DEFAULT_WEIGHTS


def _header_and_card() -> tuple[dict, dict]:
    with safe_open(str(DEFAULT_WEIGHTS), framework="pt") as fh:
        header = json.loads(fh.metadata()["kneealign"])
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
    return header, card


def test_the_card_repeats_the_shipped_files_header_and_names_it():
    header, card = _header_and_card()
    assert card["weights_file"] == DEFAULT_WEIGHTS.name
    differing = {k for k in header if card.get(k) != header[k]}
    assert not differing, f"the card disagrees with the weights' header on {sorted(differing)}"


def test_the_card_says_synthetic_and_carries_cross_renderer_metrics():
    _, card = _header_and_card()
    assert card["training_data_kind"] == "SYNTHETIC"
    assert "no real patient images" in card["training_data"]
    for held_out in ("synthetic:test", "xray3d:test"):
        measured = card["metrics"][held_out]
        assert measured["command"].startswith("knee-train evaluate")
        assert measured["model"]["version"] == card["version"]  # measured on these weights, not a predecessor


def test_the_cards_renderer_figures_are_of_the_renderers_as_they_are():
    """A renderer whose images or ground truth change (a new version) leaves the card's figures on it stale: every
    card entry that records its renderers' versions must name the current ones, and the entries with the 3D
    renderer must record them (the 2D generator's own entry predates the record)."""
    from train.data.synthetic import renderer_version

    _, card = _header_and_card()
    current = {"synthetic": renderer_version("2d"), "xray3d": renderer_version("3d")}
    assert all("generators" in card["metrics"][data] for data in ("xray3d:test", "mixed:hard"))
    for data, measured in card["metrics"].items():
        for name, version in measured.get("generators", {}).items():
            assert version == current[name], f"the card's {data} figures are of {name} {version}, not {current[name]}"
