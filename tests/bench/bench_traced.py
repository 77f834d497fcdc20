"""What tracing the networks saves per radiograph (``model.traced``, stop 48): the same radiograph read by the shipped
weights traced, as the node reads it, and as built; interleaved run by run (ABBA) in one process, so that the
machine's drift falls on both alike.

    python tests/bench/bench_traced.py [--runs 30] [--seed 0] [--weights W]

Prints the time to trace the stages (once per process), each way's median wall time per radiograph (decode
included), the mean paired difference with a bootstrap 95 % interval, and how far the two readings' landmarks and
angles lie apart.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
from paired import compared, interleaved, parser


def main() -> None:
    args = parser(__doc__).parse_args()

    import pydicom
    import torch
    from bench_inference import _dicom_bytes

    from model.inference import KneeAligner

    torch.set_num_threads(max(1, torch.get_num_threads()))
    aligners = {False: KneeAligner.load(args.weights), True: KneeAligner.load(args.weights, traced=True)}
    t = time.perf_counter()
    prepared = aligners[True].prepare()
    prepare_s = time.perf_counter() - t
    data = _dicom_bytes(args.seed)
    readings = {}

    def read(traced: bool) -> float:
        t = time.perf_counter()
        readings[traced] = aligners[traced].predict(pydicom.dcmread(io.BytesIO(data)))
        return (time.perf_counter() - t) * 1000

    walls = interleaved(read, args.runs)
    untraced, traced = readings[False], readings[True]
    print(json.dumps({
        "runs": args.runs, "threads": torch.get_num_threads(), "prepare_s": round(prepare_s, 2),
        "stages_traced": prepared,
        **compared(walls, ("untraced", "traced")),
        "landmarks_max_diff_px": float(np.abs(traced.landmarks - untraced.landmarks).max()),
        "fnts_diff_deg": traced.alignment.atfa_fnts_deg - untraced.alignment.atfa_fnts_deg,
        "fts_diff_deg": traced.alignment.atfa_fts_deg - untraced.alignment.atfa_fts_deg,
        "same_status": traced.status == untraced.status,
    }))


if __name__ == "__main__":
    main()
