"""Inference benchmark: per-stage and total time and peak memory for one radiograph, shipped vs paper widths.

    python tests/bench/bench_inference.py [--runs 20] [--seed 0] [--weights W]

Configurations: the shipped weights traced (``model.traced``, as the node's sandbox reads; ``prepare_s``: the tracing,
once per process) and as built, and the paper's widths traced. Each runs in its own process so its peak RSS is its
own. The image is a full-resolution synthetic knee DX (decode time included: pydicom reads it from an in-memory file
each run). Timings are medians over runs after one warm-up. For the traced against the untraced reading without the
drift between processes: ``bench_traced.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np


def _dicom_bytes(seed: int) -> bytes:
    """A full-resolution synthetic knee DX (detector spacing 0.1-0.2 mm) from the validation seed range."""
    from train.data.splits import validation_seeds
    from train.synth import build_dataset, render_case, sample_case

    ds = build_dataset(render_case(sample_case(validation_seeds("preop", seed + 1)[-1], "preop")))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _worker(label: str, weights: str | None, paper: bool, traced: bool, runs: int, seed: int, queue) -> None:
    import pydicom
    import torch

    from model.inference import KneeAligner
    from model.network import PAPER_GLOBAL, PAPER_LOCAL_POSTOP, PAPER_LOCAL_PREOP
    from model.weights import ModelBundle, load_bundle

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if paper:
        # The paper's global network (width 32, depth 4) is the shipped one; its local networks (width 256,
        # depth 6) are untrained here: timing does not depend on the weights. Untrained locals give a collapsed
        # first pass, so refinement is skipped and its time is reported as equal to the local pass.
        shipped = load_bundle(weights)
        bundle = ModelBundle.untrained(PAPER_GLOBAL, {"preop": PAPER_LOCAL_PREOP, "postop": PAPER_LOCAL_POSTOP},
                                       shipped.frame_spec, shipped.global_size)
        bundle.state["global"] = shipped.state["global"]
        aligner = KneeAligner(bundle, traced=traced)
    else:
        aligner = KneeAligner.load(weights, traced=traced)
    t = time.perf_counter()
    aligner.prepare()
    prepare_s = time.perf_counter() - t
    data = _dicom_bytes(seed)
    shape = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    per_stage: dict[str, list[float]] = {}
    walls = []
    for i in range(runs + 1):
        t = time.perf_counter()
        pred = aligner.predict(pydicom.dcmread(io.BytesIO(data)))
        wall = (time.perf_counter() - t) * 1000
        if i == 0:
            continue  # warm-up
        timings = dict(pred.timings_ms)
        if "refine" not in timings:
            timings["refine"] = timings["local"]
            timings["total"] += timings["local"]
            wall += timings["local"]
        walls.append(wall)
        for k, v in timings.items():
            per_stage.setdefault(k, []).append(v)
    queue.put({
        "config": label,
        "image": f"{shape.Rows}x{shape.Columns} px, {len(data) / 1e6:.1f} MB",
        "median_ms": {k: round(statistics.median(v), 1) for k, v in per_stage.items()},
        "wall_median_ms": round(statistics.median(walls), 1),
        "wall_p95_ms": round(float(np.percentile(walls, 95)), 1),
        "prepare_s": round(prepare_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="which synthetic validation case to time")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    configs = (("shipped, traced (as the node reads)", False, True), ("shipped, as built (untraced)", False, False),
               ("paper widths (global 32/4, local 256/6), traced", True, True))
    for label, paper, traced in configs:
        queue = ctx.Queue()
        proc = ctx.Process(target=_worker, args=(label, args.weights, paper, traced, args.runs, args.seed, queue))
        proc.start()
        result = queue.get()
        proc.join()
        print(json.dumps(result))


if __name__ == "__main__":
    main()
