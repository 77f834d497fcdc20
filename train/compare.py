"""``knee-train compare A B``: two evaluations of the same cases, compared knee by knee.

Two bundles evaluated on one set (``knee-train evaluate --out A`` and ``--out B``) differ in how well they measure
and in which knees they measure confidently; their reports' mean errors mix the two. This pairs the cases of the two
``cases.jsonl`` files by source and, per phase, compares the absolute errors on the knees that both measured
confidently (for the panel: both reported the measurement ``ok``), with a percentile bootstrap interval of the mean
difference (B - A: negative means B is better). It also counts the knees confident in one evaluation only, with the
reasons the other gave for flagging them.

``among="read-right"`` pairs instead the knees that both read in the right phase and on the right side, confident or
not (every measurement with a value): on images of a source a bundle never trained on, its safety net flags most
knees, and the landmark stages of two bundles are compared on what they did measure.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model.measurements import SPECS
from model.vocabulary import PHASE_NAMES
from train.metrics import bootstrap_mean
from train.panel_eval import PANEL

# The aTFA and landmark quantities: name -> the case's absolute error (cases confident in both evaluations). The
# report's headline compares with the ground truth at the paper's fixed shaft levels ("atfa_fnts"); "..._at_levels"
# with the ground truth at the levels the prediction used (the landmark error alone, without the adaptive levels').
HEADLINE: dict[str, Callable[[dict], float]] = {
    "atfa_fnts": lambda c: abs(c["atfa_fnts_pred"] - c["atfa_fnts"]),
    "atfa_fts": lambda c: abs(c["atfa_fts_pred"] - c["atfa_fts"]),
    "atfa_fnts_at_levels": lambda c: abs(c["atfa_fnts_pred"] - c["atfa_fnts_same_levels"]),
    "rp2p": lambda c: c["rp2p"],
}
UNITS = {"atfa_fnts_at_levels": "deg", "rp2p": "%"}  # the others: their measurement's unit (model.measurements)


def load_cases(path: str | Path) -> dict[str, dict]:
    """The cases of an evaluation (its ``--out`` folder or its ``cases.jsonl``), keyed by source."""
    path = Path(path)
    if path.is_dir():
        path = path / "cases.jsonl"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (give a knee-train evaluate --out folder or its cases.jsonl)")
    cases: dict[str, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
            source, _ = case["source"], case["phase"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a case of knee-train evaluate ({exc})") from None
        if source in cases:
            raise ValueError(f"{path}:{number}: case {source} appears twice")
        cases[source] = case
    return cases


def _confident(case: dict) -> bool:
    return case.get("error") is None and not case.get("low_confidence", True)


def _read_right(case: dict) -> bool:
    return (case.get("error") is None and case.get("phase_pred") == case["phase"]
            and case.get("laterality_pred") == case.get("laterality"))


# Which knees' errors are paired (``compare(among=...)``): both evaluations' results pass the test.
AMONG: dict[str, Callable[[dict], bool]] = {"confident": _confident, "read-right": _read_right}
AMONG_WORDS = {"confident": "measured confidently",
               "read-right": "read in the right phase and on the right side, confident or not"}


def _reason_kind(reason: str) -> str:
    """A warning without its numbers, so that the same check counts once: 'inconsistent: a copy ... N deg ...'."""
    return re.sub(r"[-+]?\d+(\.\d+)?", "N", reason)


def _paired(errors: list[tuple[float | None, float | None]], resamples: int, seed: int) -> dict:
    """Mean absolute errors of A and B over the knees where both have a finite one, and B - A's interval."""
    kept = np.array([e for e in errors if e[0] is not None and e[1] is not None], float).reshape(-1, 2)
    kept = kept[np.all(np.isfinite(kept), axis=1)]
    a, b = kept[:, 0], kept[:, 1]
    block = {"n": int(a.size), "a_mean": float(a.mean()) if a.size else None,
             "b_mean": float(b.mean()) if b.size else None,
             "a_median": float(np.median(a)) if a.size else None, "b_median": float(np.median(b)) if b.size else None,
             "difference": None, "ci_low": None, "ci_high": None}
    if a.size >= 2:
        block["difference"], block["ci_low"], block["ci_high"] = bootstrap_mean(b - a, resamples, seed)
    return block


def _panel_error(case: dict, name: str, confident_only: bool = True) -> float | None:
    entry = (case.get("panel") or {}).get(name)
    if not entry or entry.get("truth") is None or entry.get("pred") is None:
        return None
    if confident_only and entry.get("status") != "ok":
        return None
    return abs(entry["pred"] - entry["truth"])


def compare(a: dict[str, dict], b: dict[str, dict], resamples: int = 2000, seed: int = 0,
            among: str = "confident") -> dict:
    """Per phase: counts, the paired errors of every quantity over the knees both evaluations' results pass
    ``AMONG[among]`` for, and the knees confident in one evaluation only."""
    if among not in AMONG:
        raise ValueError(f"among: one of {', '.join(AMONG)}, not {among!r}")
    paired_test = AMONG[among]
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two evaluations share no case: evaluate both bundles on the same --data")
    mismatched = [s for s in shared if a[s]["phase"] != b[s]["phase"]]
    if mismatched:
        raise ValueError(f"case {mismatched[0]} has another phase in each evaluation: not the same set")
    out: dict = {"n_shared": len(shared), "n_only_in_a": len(set(a) - set(b)), "n_only_in_b": len(set(b) - set(a)),
                 "resamples": resamples, "seed": seed, "among": among, "phases": {}}
    for phase in PHASE_NAMES:
        pairs = [(a[s], b[s]) for s in shared if a[s]["phase"] == phase]
        if not pairs:
            continue
        both = [(x, y) for x, y in pairs if _confident(x) and _confident(y)]
        kept = [(x, y) for x, y in pairs if paired_test(x) and paired_test(y)]
        quantities = {name: _paired([(f(x), f(y)) for x, y in kept], resamples, seed) for name, f in HEADLINE.items()}
        own_status = among == "confident"  # then each panel measurement is paired on its own status
        for name in PANEL:
            errs = [(_panel_error(x, name, own_status), _panel_error(y, name, own_status))
                    for x, y in (pairs if own_status else kept)]
            if any(ex is not None and ey is not None for ex, ey in errs):
                quantities[name] = _paired(errs, resamples, seed)
        only_a = [y for x, y in pairs if _confident(x) and not _confident(y)]
        only_b = [x for x, y in pairs if _confident(y) and not _confident(x)]
        out["phases"][phase] = {
            "n": len(pairs), "confident_a": sum(_confident(x) for x, _ in pairs),
            "confident_b": sum(_confident(y) for _, y in pairs), "confident_both": len(both), "paired": len(kept),
            "quantities": quantities,
            # why the other evaluation flagged them: B's reasons for the knees only A measured, and back
            "only_a": {"n": len(only_a), "reasons_in_b": _reasons(only_a)},
            "only_b": {"n": len(only_b), "reasons_in_a": _reasons(only_b)},
        }
    return out


def _reasons(flagged: list[dict]) -> dict[str, int]:
    counts = Counter()
    for case in flagged:
        kinds = {_reason_kind(w) for w in case.get("warnings") or []} or {case.get("error") or "no reason given"}
        counts.update(kinds)
    return dict(counts.most_common())


def _fmt(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.3f}"


def markdown(result: dict, name_a: str, name_b: str) -> str:
    """The comparison as Markdown tables, one per phase."""
    lines = [f"# {name_b} against {name_a}, knee by knee", "",
             f"{result['n_shared']} cases in both evaluations; differences are B - A ({name_b} - {name_a}: negative "
             f"means {name_b} errs less), with a {result['resamples']}-resample percentile bootstrap 95 % interval "
             f"(seed {result['seed']}). Errors are paired over the knees both evaluations "
             f"{AMONG_WORDS[result.get('among', 'confident')]}.", ""]
    for phase, block in result["phases"].items():
        lines += [f"## {phase}: {block['n']} knees, confident {block['confident_a']} (A) / {block['confident_b']} (B),"
                  f" both {block['confident_both']}; paired {block.get('paired', block['confident_both'])}", "",
                  "| quantity | paired knees | A mean abs. error | B | B - A | 95 % interval | A median | B median |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, q in block["quantities"].items():
            unit = UNITS[name] if name in UNITS else SPECS[name].unit
            interval = "-" if q["ci_low"] is None else f"{_fmt(q['ci_low'], '+')} to {_fmt(q['ci_high'], '+')}"
            lines.append(f"| {name} ({unit}) | {q['n']} | {_fmt(q['a_mean'])} | {_fmt(q['b_mean'])} "
                         f"| {_fmt(q['difference'], '+')} | {interval} | {_fmt(q.get('a_median'))} "
                         f"| {_fmt(q.get('b_median'))} |")
        for key, reasons_key, measured, flagged in (("only_a", "reasons_in_b", "A", "B"),
                                                    ("only_b", "reasons_in_a", "B", "A")):
            if block[key]["n"]:
                reasons = "; ".join(f"{r} ({n})" for r, n in block[key][reasons_key].items())
                lines.append(f"\nConfident in {measured} only: {block[key]['n']}; {flagged}'s reasons: {reasons}")
        lines.append("")
    return "\n".join(lines)
