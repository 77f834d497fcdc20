"""knee-train compare: two evaluations of the same cases paired knee by knee (files written by evaluate's own
write_cases, so the format is the real one)."""

import json

import numpy as np
import pytest

from train.cli import main
from train.compare import compare, load_cases, markdown
from train.evaluate import CaseResult, write_cases
from train.metrics import bootstrap_mean


def _case(i: int, phase: str, fnts_error: float, confident: bool = True, warnings=(), truth=5.0,
          jsw: tuple[float, str] | None = None) -> CaseResult:
    panel = {"jsw_medial": {"truth": 4.0, "pred": 4.0 + jsw[0], "status": jsw[1]}} if jsw else {}
    return CaseResult(index=i, source=f"xray3d:{i}", phase=phase, laterality="L", atfa_fts=truth, atfa_fnts=truth,
                      phase_pred=phase, laterality_pred="L", rp2p=1.0 + fnts_error, atfa_fts_pred=truth + 0.5,
                      atfa_fnts_pred=truth + fnts_error, atfa_fnts_same_levels=truth, low_confidence=not confident,
                      warnings=list(warnings), panel=panel)


def _write(tmp_path, name: str, cases: list[CaseResult]):
    folder = tmp_path / name
    folder.mkdir()
    write_cases(cases, folder / "cases.jsonl")
    return folder


def test_bootstrap_interval_holds_the_mean_and_shrinks_to_it_when_every_difference_is_equal():
    rng = np.random.default_rng(1)
    values = rng.normal(-0.1, 0.3, size=80)
    mean, low, high = bootstrap_mean(values, 2000, seed=3)
    assert mean == pytest.approx(values.mean()) and low < mean < high
    sem = values.std(ddof=1) / np.sqrt(values.size)
    assert (high - low) == pytest.approx(2 * 1.96 * sem, rel=0.2)  # near the normal interval for n = 80
    assert bootstrap_mean(np.full(10, 0.25), 500) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ValueError):
        bootstrap_mean(np.array([1.0]))
    with pytest.raises(ValueError):
        bootstrap_mean(np.array([1.0, np.nan]))


def test_errors_are_paired_only_on_knees_both_measured_confidently(tmp_path):
    a = [_case(i, "preop", 1.0) for i in range(6)] + [_case(6, "preop", 9.0), _case(7, "preop", 1.0)]
    b = [_case(i, "preop", -0.5) for i in range(6)] + [
        _case(6, "preop", 9.0, confident=False, warnings=["FTS and FNTS disagree by 8.4 degrees (more than 8)"]),
        _case(7, "preop", 1.0, confident=False, warnings=["FTS and FNTS disagree by 9.1 degrees (more than 8)"])]
    result = compare(load_cases(_write(tmp_path, "a", a)), load_cases(_write(tmp_path, "b", b)), 500)
    block = result["phases"]["preop"]
    assert (block["confident_a"], block["confident_b"], block["confident_both"]) == (8, 6, 6)
    fnts = block["quantities"]["atfa_fnts"]
    # knee 6 (9 deg off in A) is left out: B flagged it, so it cannot count against A
    assert fnts["n"] == 6 and fnts["a_mean"] == pytest.approx(1.0) and fnts["b_mean"] == pytest.approx(0.5)
    assert fnts["difference"] == pytest.approx(-0.5) and fnts["ci_low"] == pytest.approx(-0.5)
    assert block["quantities"]["rp2p"]["difference"] == pytest.approx(-1.5)
    assert block["only_a"] == {"n": 2, "reasons_in_b": {"FTS and FNTS disagree by N degrees (more than N)": 2}}
    assert block["only_b"]["n"] == 0 and "postop" not in result["phases"]


def test_read_right_pairs_flagged_knees_of_the_right_phase_and_side_and_nothing_else(tmp_path, capsys):
    from dataclasses import replace

    flagged = dict(confident=False, warnings=["inconsistent: a mirrored copy measures 9.0 deg (FNTS) instead of 1.0"])
    a = [_case(i, "preop", 2.0, **flagged) for i in range(4)] + [_case(4, "preop", 1.0)]
    b = [_case(i, "preop", 1.5, **flagged) for i in range(4)] + [_case(4, "preop", 0.5)]
    a[1] = replace(a[1], phase_pred="postop")  # read as post-op by A: not paired
    b[2] = replace(b[2], laterality_pred="R")  # read on the other side by B: not paired
    b[3] = replace(b[3], error="no knee found")  # no result from B: not paired
    for i in (0, 4):
        a[i] = replace(a[i], panel={"jsw_medial": {"truth": 4.0, "pred": 4.4, "status": "low_confidence"}})
        b[i] = replace(b[i], panel={"jsw_medial": {"truth": 4.0, "pred": 4.1, "status": "low_confidence"}})
    ca, cb = load_cases(_write(tmp_path, "a", a)), load_cases(_write(tmp_path, "b", b))
    block = compare(ca, cb, 500, among="read-right")["phases"]["preop"]
    assert (block["confident_both"], block["paired"]) == (1, 2)  # knees 0 (flagged in both) and 4
    fnts = block["quantities"]["atfa_fnts"]
    assert fnts["n"] == 2 and fnts["a_mean"] == pytest.approx(1.5) and fnts["difference"] == pytest.approx(-0.5)
    assert (fnts["a_median"], fnts["b_median"]) == (pytest.approx(1.5), pytest.approx(1.0))
    assert block["quantities"]["jsw_medial"]["difference"] == pytest.approx(-0.3)  # flagged, yet paired
    confident = compare(ca, cb, 500)["phases"]["preop"]
    assert confident["paired"] == 1 and "jsw_medial" not in confident["quantities"]
    with pytest.raises(ValueError, match="among"):
        compare(ca, cb, among="everything")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--among", "read-right",
                 "--resamples", "100"]) == 0
    assert "right phase and on the right side, confident or not" in capsys.readouterr().out


def test_panel_measurements_are_paired_on_their_own_status(tmp_path):
    a = [_case(i, "preop", 1.0, confident=False, jsw=(0.4, "ok")) for i in range(4)]
    b = [_case(i, "preop", 1.0, confident=False, jsw=(0.1, "ok" if i < 3 else "not_measurable")) for i in range(4)]
    block = compare(load_cases(_write(tmp_path, "a", a)), load_cases(_write(tmp_path, "b", b)), 500)["phases"]["preop"]
    assert block["quantities"]["atfa_fnts"]["n"] == 0  # no knee confident in both: no aTFA pair
    jsw = block["quantities"]["jsw_medial"]
    assert jsw["n"] == 3 and jsw["difference"] == pytest.approx(-0.3)
    assert "| jsw_medial (mm) | 3 | 0.400 | 0.100 | -0.300 |" in markdown({"n_shared": 4, "resamples": 500, "seed": 0,
                                                                           "phases": {"preop": block}}, "a", "b")


def test_evaluations_of_different_sets_are_refused(tmp_path):
    a = load_cases(_write(tmp_path, "a", [_case(0, "preop", 1.0), _case(1, "preop", 1.0)]))
    with pytest.raises(ValueError, match="share no case"):
        compare(a, load_cases(_write(tmp_path, "b", [_case(5, "preop", 1.0)])))
    with pytest.raises(ValueError, match="another phase"):
        compare(a, load_cases(_write(tmp_path, "c", [_case(0, "postop", 1.0)])))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "cases.jsonl").write_text('{"source": "x", "phase": "preop"}\n' * 2)
    with pytest.raises(ValueError, match="appears twice"):
        load_cases(tmp_path / "d")
    for bad in ("not json\n", '{"source": "x"}\n'):  # unreadable, or without its phase
        (tmp_path / "d" / "cases.jsonl").write_text(bad)
        with pytest.raises(ValueError, match="not a case"):
            load_cases(tmp_path / "d" / "cases.jsonl")
    with pytest.raises(ValueError, match="no such file"):
        load_cases(tmp_path / "missing")


def test_cli_prints_and_writes_the_comparison(tmp_path, capsys):
    a = _write(tmp_path, "a", [_case(i, p, 1.0) for i, p in enumerate(["preop"] * 3 + ["postop"] * 3)])
    b = _write(tmp_path, "b", [_case(i, p, 0.8) for i, p in enumerate(["preop"] * 3 + ["postop"] * 3)])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--resamples", "200"]) == 0
    printed = capsys.readouterr().out
    assert "## preop: 3 knees" in printed and "| atfa_fnts (deg) | 3 | 1.000 | 0.800 | -0.200 |" in printed
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert saved["phases"]["postop"]["quantities"]["atfa_fnts"]["difference"] == pytest.approx(-0.2)
    assert saved["command"].startswith("knee-train compare")
    assert (tmp_path / "out" / "comparison.md").read_text().strip() == printed.strip()
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
