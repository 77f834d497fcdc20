"""Inference benchmark: per-stage and total time and peak memory for one radiograph, shipped vs paper widths.

    python tests/bench/bench_inference.py [--runs 20] [--size 2500x2000] [--weights W]

Each configuration runs in its own process so its peak RSS is its own. The image is a 16-bit DX of the given
size (decode time included: pydicom reads it from an in-memory file each run). Timings are medians over runs
after one warm-up.
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


def _dicom_bytes(rows: int, cols: int) -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 2000 + 1500 * np.exp(-(((xx - cols / 2) / (cols / 5)) ** 2)) + rng.normal(0, 50, (rows, cols))
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.ImageLaterality, ds.ImagerPixelSpacing = "DX", "L", [0.15, 0.15]
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.clip(img, 0, 4095).astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _worker(label: str, weights: str | None, paper: bool, runs: int, rows: int, cols: int, queue) -> None:
    import pydicom
    import torch

    from model.inference import KneeAligner
    from model.network import PAPER_GLOBAL, PAPER_LOCAL_POSTOP, PAPER_LOCAL_PREOP
    from model.weights import ModelBundle, load_bundle

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if paper:
        shipped = load_bundle(weights)
        bundle = ModelBundle.untrained(PAPER_GLOBAL, {"preop": PAPER_LOCAL_PREOP, "postop": PAPER_LOCAL_POSTOP},
                                       shipped.frame_spec, shipped.global_size)
        aligner = KneeAligner(bundle)
    else:
        aligner = KneeAligner.load(weights)
    data = _dicom_bytes(rows, cols)
    per_stage: dict[str, list[float]] = {}
    walls = []
    for i in range(runs + 1):
        t = time.perf_counter()
        pred = aligner.predict(pydicom.dcmread(io.BytesIO(data)))
        wall = (time.perf_counter() - t) * 1000
        if i == 0:
            continue  # warm-up
        walls.append(wall)
        for k, v in pred.timings_ms.items():
            per_stage.setdefault(k, []).append(v)
    queue.put({
        "config": label,
        "median_ms": {k: round(statistics.median(v), 1) for k, v in per_stage.items()},
        "wall_median_ms": round(statistics.median(walls), 1),
        "wall_p95_ms": round(float(np.percentile(walls, 95)), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", default="2500x2000", help="rows x columns of the test radiograph")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    rows, cols = (int(v) for v in args.size.lower().split("x"))
    ctx = mp.get_context("spawn")
    for label, paper in (("shipped", False), ("paper widths (global 32/4, local 256/6)", True)):
        queue = ctx.Queue()
        proc = ctx.Process(target=_worker, args=(label, args.weights, paper, args.runs, rows, cols, queue))
        proc.start()
        result = queue.get()
        proc.join()
        print(json.dumps(result))


if __name__ == "__main__":
    main()
