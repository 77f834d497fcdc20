"""``knee-train``: synthetic data, training and evaluation from the command line.

    knee-train synth --n 20 --out /tmp/synth [--seed 0] [--start 0] [--phase preop|postop] [--hard] [--compress j2k|rle]
                     [--renderer 2d|3d] [--variant implant_designs|dense_plates|filled_notch]
    knee-train fit train/configs/cpu-v1.yaml
    knee-train steptime train/configs/cpu-v1.yaml [--steps 10]
    knee-train evaluate [--weights W] --data synthetic:test [--out DIR]   # W: the shipped weights if omitted
    knee-train invariance --weights W --data xray3d:test [--n-per-phase 100] [--angles 15 -15]
    knee-train export runs/RUN/weights.safetensors model/weights/kneealign-vN.safetensors --version N.0.0 [--float16]
    knee-train compare runs/eval/A runs/eval/B [--out DIR] [--resamples 2000] [--among read-right]   # knee by knee
    knee-train preannotate [--weights W] --images DIR --out DIR [--all] [--any-view] [--val-fraction F]  # readings
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from train.synth.anatomy import VARIANTS


def _synth(args: argparse.Namespace) -> int:
    from train.synth import generate

    compress = {"j2k": "jpeg2000"}.get(args.compress, args.compress)
    generate(args.n, Path(args.out), seed=args.seed, phase=args.phase, hard=args.hard, compress=compress,
             drop_laterality=args.drop_laterality, renderer=args.renderer, variants=args.variant, start=args.start)
    print(f"wrote {args.n} synthetic radiographs to {args.out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from train.fitting import fit

    path, results = fit(args.config, progress=not args.no_progress)
    for stage, r in results.items():
        print(f"{stage}: {r.steps} steps, {r.elapsed_s / 60:.1f} min, median {r.step_time_s:.3f} s/step, "
              f"validation {json.dumps({k: round(v, 3) for k, v in r.validation.items()})}")
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def _steptime(args: argparse.Namespace) -> int:
    from train.fitting.timing import measure_step_times

    for stage, t in measure_step_times(args.config, args.steps).items():
        print(f"{stage}: {t['median_s']:.3f} s/step median over {t['steps']} steps "
              f"(batch {t['batch_size']}); {t['iterations']} iterations ≈ {t['estimate_min']:.1f} min")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model.vocabulary import PHASE_NAMES
    from train.evaluate import resolve_data, run_evaluation, update_card, write_cases
    from train.report import markdown_report, write_figures

    command = args.command_line
    if args.phase and args.update_card:  # a card's metrics cover both phases
        raise SystemExit("knee-train evaluate: --update-card needs both phases; leave out --phase")
    phases = (args.phase,) if args.phase else PHASE_NAMES
    data = resolve_data(args.data, args.n_per_phase, args.workers, not args.no_progress, phases)
    cases, summary = run_evaluation(args.weights, data, args.device, args.use_tags, not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary["command"] = command
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_cases(cases, out / "cases.jsonl")
    report = markdown_report(summary, command)
    (out / "report.md").write_text(report)
    if not args.no_figures:
        write_figures(cases, data.reload, out)
    if args.update_card:
        from model.weights import DEFAULT_WEIGHTS

        card = update_card(Path(args.weights) if args.weights else DEFAULT_WEIGHTS, summary, command)
        print(f"metrics recorded in {card}")
    print(report)
    print(f"report, tables and figures in {out}")
    return 0


def _invariance(args: argparse.Namespace) -> int:
    from train.evaluate import invariance, resolve_data

    data = resolve_data(args.data, args.n_per_phase, args.workers, not args.no_progress)
    result = invariance(args.weights, data, tuple(args.angles), args.device, not args.no_progress)
    result["command"] = args.command_line
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "invariance.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, among in (("copies", "every case"), ("copies_confident", "both confident")):
        for name, block in result[key].items():
            f, t = block["fnts"], block["fts"]
            print(f"{name} ({among}): |FNTS difference| median {f['median']:.2f}, p95 {f['p95']:.2f}, max "
                  f"{f['max']:.2f} deg; |FTS difference| median {t['median']:.2f}, p95 {t['p95']:.2f} deg (n={f['n']})")
    if result["no_result"]:
        print(f"no result: {result['no_result']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from train.export import export_bundle

    path = export_bundle(args.source, args.target, args.version, args.float16)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB) and {path.with_suffix('.json')}; metrics not carried over: "
          f"measure it with knee-train evaluate --weights {path} --update-card")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from train.compare import compare, load_cases, markdown

    try:
        result = compare(load_cases(args.a), load_cases(args.b), args.resamples, args.seed, args.among)
    except ValueError as exc:
        print(f"knee-train compare: {exc}", file=sys.stderr)
        return 2
    text = markdown(result, args.a, args.b)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(text + "\n")
        (out / "comparison.json").write_text(json.dumps({"command": args.command_line, "a": args.a, "b": args.b,
                                                         **result}, indent=2) + "\n")
    return 0


def _preannotate(args: argparse.Namespace) -> int:
    from model.inference import KneeAligner
    from train.preannotate import preannotate

    aligner = KneeAligner.load(args.weights, device=args.device, traced=True)
    out = Path(args.out)
    try:
        summary = preannotate(aligner, Path(args.images), out, args.val_fraction, args.all,
                              progress=not args.no_progress, any_view=args.any_view)
    except (FileNotFoundError, ValueError) as exc:
        print(f"knee-train preannotate: {exc}", file=sys.stderr)
        return 2
    print(f"read {summary.read} radiographs, wrote {summary.written} annotations ({dict(summary.splits)}); "
          f"{summary.partial} with points beyond the image; skipped {dict(summary.skipped)}; "
          f"manifest {out / 'manifest.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from model.vocabulary import PHASE_NAMES

    parser = argparse.ArgumentParser(prog="knee-train", description="KneeAlign synthetic data, training, evaluation")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic DICOM radiographs with ground-truth JSON")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="the first case's index (to write cases of a run again)")
    p.add_argument("--phase", choices=list(PHASE_NAMES), default=None, help="default: both, at random")
    p.add_argument("--hard", action="store_true", help="the harder robustness distribution")
    p.add_argument("--compress", choices=["j2k", "jpeg2000", "rle"], default=None,
                   help="lossless JPEG 2000 (j2k) or RLE transfer syntax; default uncompressed")
    p.add_argument("--drop-laterality", type=float, default=0.0,
                   help="fraction of files written without laterality tags")
    p.add_argument("--renderer", choices=["2d", "3d"], default="2d",
                   help="2d: the parametric outline generator; 3d: 3D solids projected like X-rays")
    p.add_argument("--variant", action="append", choices=list(VARIANTS), default=[],
                   help="2d, repeatable: implant_designs (implants of other designs), dense_plates (pre-op knees "
                        "with dense subchondral plates and a bright plateau rim), filled_notch (pre-op knees with a "
                        "grey notch under a denser patella)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("fit", help="train the stages of a run configuration and write a weights bundle")
    p.add_argument("config")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_fit)

    p = sub.add_parser("steptime", help="measure seconds per training step of each stage of a configuration")
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=10)
    p.set_defaults(func=_steptime)

    p = sub.add_parser("evaluate", help="Table 1 and Table 2 of the paper, plots and overlays")
    p.add_argument("--weights", default=None, help="bundle (.safetensors); default: the shipped weights")
    p.add_argument("--data", required=True,
                   help="synthetic:test|hard|hard-open|val (2D generator), xray3d:test|hard|hard-open|val (projection "
                        "renderer), mixed:hard, a folder of DICOM + ground-truth JSON, or a manifest (val: the "
                        "validation seeds, for tuning)")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--n-per-phase", type=int, default=None, help="synthetic sets: only the first N per phase")
    p.add_argument("--phase", choices=PHASE_NAMES, default=None,
                   help="synthetic sets: only this phase's cases (e.g. after retraining one landmark stage; the other "
                        "phase's tables stay empty)")
    p.add_argument("--use-tags", action="store_true",
                   help="give the true laterality as the DICOM tag (default: laterality from the image alone)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="processes rendering synthetic cases")
    p.add_argument("--update-card", action="store_true", help="record the summary in the weights' model card")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("invariance", help="do mirrored and rotated copies measure the same angle?")
    p.add_argument("--weights", default=None)
    p.add_argument("--data", required=True, help="as for evaluate")
    p.add_argument("--n-per-phase", type=int, default=100)
    p.add_argument("--angles", type=float, nargs="+", default=[15.0, -15.0])
    p.add_argument("--out", default="runs/invariance")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_invariance)

    p = sub.add_parser("export", help="write a trained bundle as a release: new version, optionally float16")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--version", default=None, help="the release's version (default: the source's)")
    p.add_argument("--float16", action="store_true", help="store the weights at half precision (half the file)")
    p.set_defaults(func=_export)

    p = sub.add_parser("compare", help="two evaluations of the same set, knee by knee, with bootstrap intervals")
    p.add_argument("a", help="the first evaluation: a knee-train evaluate --out folder or its cases.jsonl")
    p.add_argument("b", help="the second, on the same --data")
    p.add_argument("--out", default=None, help="also write comparison.md and comparison.json here")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--among", choices=("confident", "read-right"), default="confident",
                   help="pair the knees both measured confidently (default), or both read in the right phase and on "
                        "the right side, confident or not (images of a source a bundle never trained on)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("preannotate", help="the node's readings of unlabelled radiographs as annotations + manifest "
                                           "(to correct by hand, or to self-train on)")
    p.add_argument("--weights", default=None, help="bundle (.safetensors); default: the shipped weights")
    p.add_argument("--images", required=True, help="a DICOM file or a folder searched recursively")
    p.add_argument("--out", required=True)
    p.add_argument("--all", action="store_true",
                   help="write the low-confidence readings too, with split 'flagged' (never trained on as written)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="confident readings put in split 'val'")
    p.add_argument("--any-view", action="store_true",
                   help="read every DICOM image, not only those the node would process (knee AP/PA DX or CR "
                        "by their attributes); for exports whose tags were stripped")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_preannotate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "knee-train " + shlex.join(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
