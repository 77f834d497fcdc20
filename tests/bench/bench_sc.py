"""Secondary Capture size and encoding time: uncompressed RGB against the default JPEG 2000 Lossless (YBR_RCT),
with RLE Lossless for comparison, on synthetic knees measured by the shipped weights.

    python tests/bench/bench_sc.py [--cases 12] [--full-resolution 4]

Cases are synthetic radiographs from ``train.synth`` (held-out validation seeds, pre- and post-op alternating): the
first ``--cases`` at 0.5 mm/pixel as the node's tests use them, then ``--full-resolution`` at the detector's own
spacing (2000-3000 px a side, the size of a real knee DX). For each, the SC is drawn once; every encoding is
decoded again and compared with the drawn pixels (lossless means identical). One JSON line per case, then a
summary line with medians. Sizes are Part 10 file sizes; times are the encoder's alone (median of 3 runs).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import time

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, RLELossless


def _file_size(ds: pydicom.Dataset) -> int:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return len(buffer.getvalue())


def _decoded(ds: pydicom.Dataset) -> np.ndarray:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer).pixel_array


def _timed(encode, plain: pydicom.Dataset, runs: int = 3) -> tuple[pydicom.Dataset, float]:
    times, out = [], None
    for _ in range(runs):
        out = copy.deepcopy(plain)
        started = time.perf_counter()
        encode(out)
        times.append((time.perf_counter() - started) * 1000)
    return out, statistics.median(times)


def _case(seed: int, phase: str, spacing_mm: float | None) -> pydicom.Dataset:
    from train.synth import build_dataset, render_case, sample_case

    return build_dataset(render_case(sample_case(seed, phase), pixel_spacing_mm=spacing_mm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--full-resolution", type=int, default=4)
    args = parser.parse_args()

    from dicomnode.outputs.sc import build_sc, compress_rgb_j2k_lossless
    from model.inference import KneeAligner
    from train.data.splits import validation_seeds

    aligner = KneeAligner.load(device="cpu")
    ratios, j2k_ms, rle_ratios = [], [], []
    total = args.cases + args.full_resolution
    for i in range(total):
        phase = ("preop", "postop")[i % 2]
        seed = validation_seeds(phase, total)[i]
        spacing = 0.5 if i < args.cases else None
        source = _case(seed, phase, spacing)
        prediction = aligner.predict(source)
        plain = build_sc(source, prediction, transfer_syntax=ExplicitVRLittleEndian)
        rgb = plain.pixel_array
        j2k, j2k_time = _timed(lambda ds, rgb=rgb: compress_rgb_j2k_lossless(ds, rgb), plain)
        rle, rle_time = _timed(lambda ds, rgb=rgb: ds.compress(RLELossless, arr=rgb, generate_instance_uid=False),
                               plain)
        sizes = {"uncompressed": _file_size(plain), "jpeg2000_lossless": _file_size(j2k), "rle": _file_size(rle)}
        identical = all(np.array_equal(_decoded(ds), rgb) for ds in (j2k, rle))
        ratios.append(sizes["jpeg2000_lossless"] / sizes["uncompressed"])
        rle_ratios.append(sizes["rle"] / sizes["uncompressed"])
        j2k_ms.append(j2k_time)
        print(json.dumps({"case": i, "phase": phase, "source": f"{source.Rows}x{source.Columns}",
                          "sc": f"{plain.Rows}x{plain.Columns}", "bytes": sizes,
                          "j2k_ratio": round(ratios[-1], 3), "rle_ratio": round(rle_ratios[-1], 3),
                          "encode_ms": {"jpeg2000_lossless": round(j2k_time, 1), "rle": round(rle_time, 1)},
                          "pixel_identical": identical}), flush=True)
        assert identical, "a lossless encoding changed the pixels"
    print(json.dumps({"summary": {"cases": total, "median_j2k_ratio": round(statistics.median(ratios), 3),
                                  "max_j2k_ratio": round(max(ratios), 3),
                                  "median_rle_ratio": round(statistics.median(rle_ratios), 3),
                                  "median_j2k_encode_ms": round(statistics.median(j2k_ms), 1),
                                  "max_j2k_encode_ms": round(max(j2k_ms), 1)}}))


if __name__ == "__main__":
    main()
