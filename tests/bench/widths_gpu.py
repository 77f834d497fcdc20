"""The paper's network widths against the shipped ones, trained side by side on one GPU (or, slowly, a CPU).

Renders the images of ``train/configs/widths-narrow.yaml`` once (both configurations share them), measures each
network's seconds per step, gives both the same number of iterations so that the two runs together fit the time
budget, and trains them at the same time, each in its own process. Prints one JSON summary (steps, minutes, seconds
per step, the last validation errors) and copies the bundles to ``--copy-to`` (files over 15 MiB in parts:
``cat NAME.part-* > NAME`` joins them), with the model cards, learning curves and logs in ``widths-records.tar.gz``.
Evaluate each bundle with ``knee-train evaluate``; docs/results/widths-on-gpu.md has the figures and the commands.

    python tests/bench/widths_gpu.py --budget-s 560 --deadline-s 600 --copy-to "$OUT"  # 3300 iterations on an H200
    python tests/bench/widths_gpu.py --iterations 3300                                 # the same run again
    python tests/bench/widths_gpu.py --n-train 8 --iterations 20                       # a dry run on a CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"narrow": REPO / "train/configs/widths-narrow.yaml", "paper": REPO / "train/configs/widths-paper.yaml"}
STAGE = "local_preop"
PART = 15 * 2**20


def write_config(source: Path, out: Path, iterations: int, n_train: int | None) -> Path:
    """A copy of ``source`` with the stage's iterations set (and, for a dry run, fewer images)."""
    cfg = yaml.safe_load(source.read_text())
    cfg["stages"][STAGE]["iterations"] = iterations
    cfg["stages"][STAGE]["warmup"] = min(cfg["stages"][STAGE].get("warmup", 0), iterations // 10)
    if n_train is not None:
        for data in (cfg["data"], cfg["data"]["xray3d"]):
            data["n_train_preop"], data["n_val_per_phase"] = n_train, min(data["n_val_per_phase"], n_train)
            data["cache_file"] = data["cache_file"].replace(".npz", f"-dry{n_train}.npz")
    path = out / source.name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def copy_out(files: list[Path], dest: Path) -> list[str]:
    """Copy ``files`` into ``dest``, splitting any over ``PART`` bytes into ``NAME.part-00``, ``-01``, ..."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        data = f.read_bytes()
        if len(data) <= PART:
            shutil.copyfile(f, dest / f.name)
            written.append(f.name)
            continue
        for k in range(0, len(data), PART):
            name = f"{f.name}.part-{k // PART:02d}"
            (dest / name).write_bytes(data[k:k + PART])
            written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=float, default=270.0, help="training time of the two runs side by side")
    p.add_argument("--deadline-s", type=float, default=None, help="the whole script's time: training gets less "
                   "when rendering took longer")
    p.add_argument("--max-iterations", type=int, default=8000)
    p.add_argument("--iterations", type=int, default=None, help="this many, whatever the budget (to repeat a run)")
    p.add_argument("--n-train", type=int, default=None, help="images per renderer (default: the configs')")
    p.add_argument("--out", default="runs/widths")
    p.add_argument("--copy-to", default=None)
    args = p.parse_args(argv)
    start = time.monotonic()
    sys.path.insert(0, str(REPO))
    import torch

    from train.fitting.config import load_config
    from train.fitting.sources import build_data
    from train.fitting.timing import measure_step_times

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    probe = {k: write_config(v, out, 100, args.n_train) for k, v in CONFIGS.items()}
    t0 = time.monotonic()
    train, val = build_data(load_config(probe["narrow"]))  # renders once into the cache files both share
    render_s = time.monotonic() - t0
    step_s = {k: measure_step_times(str(v))[STAGE]["median_s"] for k, v in probe.items()}
    budget = args.budget_s
    if args.deadline_s is not None:
        budget = min(budget, args.deadline_s - (time.monotonic() - start) - 45.0)
    iterations = int(max(20, min(args.max_iterations, budget / sum(step_s.values()))))
    iterations -= iterations % 100 if iterations >= 200 else 0
    iterations = args.iterations or iterations
    configs = {k: write_config(v, out, iterations, args.n_train) for k, v in CONFIGS.items()}
    print(json.dumps({"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                      "train_images": len(train), "val_images": len(val), "render_s": round(render_s, 1),
                      "step_s_alone": step_s, "iterations": iterations}), flush=True)

    t0 = time.monotonic()
    procs = {k: subprocess.Popen([sys.executable, "-m", "train.cli", "fit", str(c), "--no-progress"],
                                 cwd=REPO, stdout=(out / f"fit-{k}.log").open("w"), stderr=subprocess.STDOUT)
             for k, c in configs.items()}
    codes = {k: proc.wait() for k, proc in procs.items()}
    summary = {"iterations": iterations, "train_s_side_by_side": round(time.monotonic() - t0, 1), "runs": {}}
    bundles, small = [], [(out / "summary.json", "summary.json")]
    for k, c in configs.items():
        cfg = load_config(c)
        bundle = Path(cfg.output)
        log = Path(cfg.checkpoint_dir) / STAGE / "log.jsonl"
        run = {"exit": codes[k]}
        if codes[k] == 0:
            card = json.loads(bundle.with_suffix(".json").read_text())
            run.update(card["stages"][STAGE])  # network, parameters, train_time_s, median_step_s, validation
            bundles.append(bundle)
            small.append((bundle.with_suffix(".json"), bundle.with_suffix(".json").name))
        small += [(f, name) for f, name in ((log, f"log-{k}.jsonl"), (out / f"fit-{k}.log", f"fit-{k}.log"),
                                             (c, c.name)) if f.exists()]
        summary["runs"][k] = run
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, default=str), flush=True)
    if args.copy_to:
        dest = Path(args.copy_to)
        written = copy_out(bundles, dest)
        with tarfile.open(dest / "widths-records.tar.gz", "w:gz") as tar:
            for f, name in small:  # the model cards, learning curves, fit logs, configs and this summary
                tar.add(f, arcname=name)
        print("copied:", written + ["widths-records.tar.gz"], flush=True)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
