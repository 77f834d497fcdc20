"""Fixtures for the training tests: a toy annotated dataset (PNG + .pts/JSON + manifest) whose landmarks are
drawn as dots, so that a tiny network can learn them in a few iterations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.frames import mirror_points
from model.scheme import load_scheme
from train.data.annotations import write_pts


def _template(n_points: int, reference: tuple[int, int]) -> np.ndarray:
    """Points in units of the reference length, reference corners at (-0.5, 0) and (0.5, 0)."""
    pts = np.random.default_rng(42).uniform([-0.9, -1.3], [0.9, 1.3], size=(n_points, 2))
    pts[reference[0]], pts[reference[1]] = (-0.5, 0.0), (0.5, 0.0)
    return pts


def toy_knee(phase: str, laterality: str, seed: int,
             size: tuple[int, int] = (320, 256)) -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit image with every landmark drawn as a dot (the reference corners bigger), and the landmarks."""
    scheme = load_scheme(phase)
    rng = np.random.default_rng(seed)
    h, w = size
    length = rng.uniform(60, 75)
    angle = math.radians(rng.uniform(-8, 8))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array([w / 2, h / 2]) + rng.uniform(-10, 10, size=2)
    pts = _template(scheme.n_points, scheme.roles["reference"]) @ rot.T * length + centre
    img = rng.normal(0.2, 0.02, size=(h, w)).astype(np.float32)
    for i, (x, y) in enumerate(pts):
        radius = 5 if i in scheme.roles["reference"] else 2
        cv2.circle(img, (round(x), round(y)), radius, 0.9, -1)
    if laterality == "R":
        img, pts = img[:, ::-1], mirror_points(pts, w)
    return (np.clip(img, 0, 1) * 4000).astype(np.uint16), pts


@pytest.fixture
def toy_manifest(tmp_path: Path) -> Path:
    """4 pre-op (.pts) and 4 post-op (JSON) toy images, left and right, listed in a CSV manifest (one image of
    each phase in split "val", the others "train")."""
    rows = ["image,landmarks,laterality,phase,pixel_spacing_mm,split"]
    for i in range(8):
        phase = "preop" if i < 4 else "postop"
        laterality = "LR"[i % 2]
        img, pts = toy_knee(phase, laterality, seed=i)
        cv2.imwrite(str(tmp_path / f"k{i}.png"), img)
        if phase == "preop":
            write_pts(tmp_path / f"k{i}.pts", pts)
            rows.append(f"k{i}.png,k{i}.pts,{laterality},,0.5,{'val' if i == 3 else 'train'}")
        else:
            (tmp_path / f"k{i}.json").write_text(json.dumps({"landmarks": pts.tolist(), "laterality": laterality}))
            rows.append(f"k{i}.png,k{i}.json,,postop,0.5,{'val' if i == 7 else 'train'}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


NEUTRAL_INTENSITY = {"gamma": [1, 1], "contrast": [1, 1], "brightness": 0, "blur_p": 0, "noise_p": 0, "cutout_p": 0}


def _tiny_config(tmp_path: Path, data: dict, iterations: int = 40) -> dict:
    """A run configuration with tiny networks and inputs (a few seconds per stage on a CPU)."""
    net = {"depth": 2, "width": 8, "stem_stride": 2}
    stage = {"network": net, "iterations": iterations, "batch_size": 4, "lr": 1e-2, "warmup": 0,
             "loss": {"heatmap_kl_weight": 1.0}}
    return {
        "name": "tiny", "version": "0.0.1-test", "seed": 0, "threads": 2,
        "output": str(tmp_path / "out" / "tiny.safetensors"), "checkpoint_dir": str(tmp_path / "ckpt"),
        "checkpoint_every": 10, "validate_every": 20, "global_size": 64,
        "frame": {"half_width": 1.0, "above": 1.5, "below": 1.5, "width_px": 32, "height_px": 48},
        "data": data,
        "stages": {
            "global": {**stage, "augment": {"rotation_deg": 0, "scale": [1, 1], "shift": 0, "mirror_p": 0,
                                            "intensity": NEUTRAL_INTENSITY}},
            "local_preop": {**stage, "augment": {"scale": 0, "rotation_deg": 0, "shift": 0,
                                                 "intensity": NEUTRAL_INTENSITY}},
            "local_postop": {**stage, "augment": {"scale": 0.05, "rotation_deg": 3, "shift": 0.02}},
        },
    }


@pytest.fixture
def tiny_config():
    """``tiny_config(tmp_path, data, iterations=40) -> dict``: a tiny run configuration to write as YAML."""
    return _tiny_config
