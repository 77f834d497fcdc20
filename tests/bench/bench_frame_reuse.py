"""What one reading saves by cutting its frames through one ``FrameSampler`` (stop 47): the same radiograph read with
the frames' downsamplings shared, as the node reads it, and with a fresh downsampling (and mirror) for every frame, as
before; interleaved run by run (ABBA) in one process, so that the machine's drift falls on both alike.

    python tests/bench/bench_frame_reuse.py [--runs 30] [--seed 0] [--weights W]

Prints each way's median wall time per radiograph (decode included), the mean paired difference with a bootstrap 95 %
interval, and the whole-image downsamplings per reading. The results are the same bit for bit either way.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import numpy as np
from paired import compared, interleaved, parser


@contextlib.contextmanager
def fresh_frames():
    """Every frame downsampled afresh and every mirror made anew (the reading before ``FrameSampler``)."""
    from model.preprocess import FrameSampler

    shared_frame, shared_mirror = FrameSampler.frame, FrameSampler.mirrored

    def frame(self, matrix, spec):
        self._downsampled.clear()
        return shared_frame(self, matrix, spec)

    FrameSampler.frame = frame
    FrameSampler.mirrored = lambda self: FrameSampler(np.ascontiguousarray(self.image[:, ::-1]))
    try:
        yield
    finally:
        FrameSampler.frame, FrameSampler.mirrored = shared_frame, shared_mirror


def main() -> None:
    args = parser(__doc__).parse_args()

    import pydicom
    import torch
    from bench_inference import _dicom_bytes

    import model.preprocess as preprocess
    from model.inference import KneeAligner

    torch.set_num_threads(max(1, torch.get_num_threads()))
    aligner = KneeAligner.load(args.weights, traced=True)  # as the node reads
    aligner.prepare()
    data = _dicom_bytes(args.seed)
    made = []
    downsample = preprocess._downsample
    preprocess._downsample = lambda image, factor: made.append(factor) or downsample(image, factor)

    counts: dict[bool, int] = {}

    def read(shared: bool) -> float:
        made.clear()
        with contextlib.nullcontext() if shared else fresh_frames():
            t = time.perf_counter()
            aligner.predict(pydicom.dcmread(io.BytesIO(data)))
            wall = (time.perf_counter() - t) * 1000
        counts[shared] = len(made)
        return wall

    walls = interleaved(read, args.runs)
    print(json.dumps({
        "runs": args.runs, "threads": torch.get_num_threads(),
        **compared(walls, ("fresh", "shared")),
        "downsamplings_per_reading": {"shared": counts[True], "fresh": counts[False]},
    }))


if __name__ == "__main__":
    main()
