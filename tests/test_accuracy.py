"""Time to accuracy in the report, on golden fit results (tests/fit_golden.py) written by the
real result writer. Expected figures are worked out here by hand from the golden histories.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fit_golden import TARGET_AUC, best_mean_auc, elapsed, write_fit_golden

from bench.contract.validation_scores import decode, encode
from bench.job.fit import per_class_auc
from converters.labels import LABELS
from reports import accuracy, accuracy_plots, accuracy_tables, intervals
from reports.accuracy import FitRun
from reports.frame import CELL_KEYS, runs_frame
from reports.load import load_results_sets
from reports.reference import CHEXNET_AUROC, CHEXNET_MEAN_AUROC
from reports.stats import t_quantile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory: pytest.TempPathFactory) -> list[FitRun]:
    root = write_fit_golden(tmp_path_factory.mktemp("fit"))
    sets = load_results_sets([root])
    documents = {run.path.as_posix(): run.result for one in sets for run in one.runs}
    targets = {one.label: accuracy.target_of(one) for one in sets}
    assert targets == {"fit-golden": TARGET_AUC}  # read from the sweep file
    return accuracy.fit_runs(runs_frame(sets), documents, targets)


def _cell(found: list[FitRun], data_format: str, gpus: int) -> list[FitRun]:
    chosen = [r for r in found if r.cell["data_format"] == data_format and r.cell["gpus"] == gpus]
    return sorted(chosen, key=lambda run: run.repeat)


def test_time_to_target_reached_at_last_epoch_and_never(golden_runs: list[FitRun]) -> None:
    raw = _cell(golden_runs, "raw", 1)
    assert len(raw) == 2
    # Repeat 0: 0.70, 0.78, best (~0.92), 0.81: target and best both after 3 epochs.
    first = accuracy.quality(raw[0])
    assert (first.best_epochs, first.target_epochs) == (3, 3)
    assert first.best_wall_s == first.target_wall_s == 3 * (8.0 + 2.0 + 1.0) == elapsed(2, 1)
    # Repeat 1: 0.71, 0.80 (exactly the target: reached), best, 0.79.
    second = accuracy.quality(raw[1])
    assert (second.best_epochs, second.target_epochs) == (3, 2)
    assert second.target_wall_s == 22.0
    # Reached at the last epoch (3 of 3), which is also the best.
    (last,) = _cell(golden_runs, "tfrecord", 1)
    at_last = accuracy.quality(last)
    assert at_last.target_epochs == len(last.history) == 3 and at_last.target_wall_s == 33.0
    # Never reached: 0.55, 0.60, best ~0.66 < 0.80; 2 GPUs halve the training time.
    (never,) = _cell(golden_runs, "tfrecord", 2)
    missed = accuracy.quality(never)
    assert missed.target_auc == TARGET_AUC
    assert missed.target_epochs is None and missed.target_wall_s is None
    assert missed.best_epochs == 3 and missed.best_wall_s == 3 * (4.0 + 2.0 + 1.0)
    assert missed.best_auc == pytest.approx(best_mean_auc(never_repeat()), abs=1e-12)
    # A target given explicitly overrides the runs' own.
    assert accuracy.quality(never, target_auc=0.58).target_epochs == 2


def never_repeat():
    from fit_golden import FIT_CELLS

    return FIT_CELLS[2].repeats[0]


def test_time_to_quality_table_text(golden_runs: list[FitRun]) -> None:
    table = accuracy_tables.time_to_quality_table(golden_runs)
    rows = {(row[1], row[2]): dict(zip(table.headers, row, strict=True)) for row in table.rows}
    never = rows[("tfrecord/png", "2")]
    assert never["Epochs to target"] == never["Wall s to target"] == "not reached"
    assert never["Target AUC"] == "0.800"
    assert never["Train s/epoch"] == "4.00" and never["Validation s/epoch"] == "2.00"
    assert never["First epoch s"] == "6.00"
    raw = rows[("raw", "1")]
    assert raw["Repeats"] == "2"
    # Epochs to target 3 and 2: mean 2.5, sd 0.707, t(1) = 12.706 -> 2.5 +- 6.35, clipped at 1.
    assert raw["Epochs to target"] == "2.5 (1 to 8.9)"
    # Wall s 33 and 22: mean 27.5, sd 7.78, half-width 12.706 * 5.5 = 69.9, clipped at 0.
    assert raw["Wall s to target"] == "27.50 (0.00 to 97.38)"
    assert rows[("tfrecord/png", "1")]["Epochs to target"] == "3"
    assert not any(value == "" for row in table.rows for value in row)  # never blank
    notes = " ".join(table.notes)
    assert "written by rank 0 only" in notes
    assert "every validation example exactly once" in notes and "4 of 4 runs" in notes


def test_coverage_line_names_a_run_that_missed_examples(golden_runs: list[FitRun]) -> None:
    run = golden_runs[0]
    history = tuple(dict(entry, val_examples=entry["val_examples"] - 1) for entry in run.history)
    short = FitRun(run.path, run.key, run.repeat, history, run.fit, None, run.validation_images)
    lines = accuracy.coverage_lines([short])
    assert any("did NOT cover" in line and run.path in line for line in lines)


def _hand_made_run(per_class: dict[str, float | None], gpus: int = 1) -> FitRun:
    key = dict.fromkeys(CELL_KEYS, "—") | {
        "source": "hand",
        "model": "resnet50",
        "mode": "fit",
        "data_format": "raw",
        "gpus": gpus,
        "nodes": 1,
        "batch_per_gpu": 8,
        "image_size": 64,
        "xla": False,
    }
    history = (
        {"val_auc_mean": 0.5, "val_auc_per_class": dict.fromkeys(LABELS, 0.5), "train_s": 1.0},
        {"val_auc_mean": 0.6, "val_auc_per_class": per_class, "train_s": 1.0},
        {"val_auc_mean": 0.55, "val_auc_per_class": dict.fromkeys(LABELS, 0.9), "train_s": 1.0},
    )
    return FitRun("hand.json", tuple(key[k] for k in CELL_KEYS), 0, history, {}, None, None)


def test_per_class_table_against_a_hand_made_history() -> None:
    per_class: dict[str, float | None] = {name: 0.5 + 0.01 * i for i, name in enumerate(LABELS)}
    per_class["Hernia"] = None  # only negatives in the split
    (table,) = accuracy_tables.per_class_tables([_hand_made_run(per_class)])
    assert table.headers == ("Finding", "CheXNet (Rajpurkar et al. 2017)", "1 GPU")
    rows = {row[0]: row for row in table.rows}
    # The best epoch is the second (0.6), not the last (whose classes are all 0.9).
    assert rows["Atelectasis"] == ("Atelectasis", "0.809", "0.500")
    assert rows["Pleural_Thickening"] == ("Pleural_Thickening", "0.806", "0.620")
    assert rows["Hernia"] == ("Hernia", "0.916", "n/a")
    assert rows["Mean"] == ("Mean", "0.841", f"{np.mean([0.5 + 0.01 * i for i in range(13)]):.3f}")
    assert pytest.approx(0.8414, abs=1e-4) == CHEXNET_MEAN_AUROC
    assert [row[0] for row in table.rows] == [*LABELS, "Mean"]
    assert rows["Cardiomegaly"][1] == f"{CHEXNET_AUROC['Cardiomegaly']:.3f}" == "0.925"
    assert "synthetic data" in " ".join(table.notes) and "not comparable" in table.notes[0]
    assert "Rajpurkar et al. 2017" in table.intro and "arXiv:1711.05225" in table.intro


def test_same_learning_on_golden(golden_runs: list[FitRun]) -> None:
    compared = {item.about: item for item in accuracy.comparisons(golden_runs)}
    assert set(compared) == {"format", "gpus"}
    # Raw vs TFRecord at 1 GPU: the same separation, other noise: no difference detected.
    same = compared["format"]
    assert "bootstrap" in same.method and "first repeats" in same.method
    assert same.interval[0] < 0 < same.interval[1]
    assert same.verdict == "no difference detected"
    from fit_golden import FIT_CELLS

    expected = best_mean_auc(FIT_CELLS[1].repeats[0]) - best_mean_auc(FIT_CELLS[0].repeats[0])
    assert same.difference == pytest.approx(expected)
    # 1 -> 2 GPUs: much weaker scores: lower, the interval excludes zero.
    worse = compared["gpus"]
    assert worse.interval[1] < 0 and worse.verdict.startswith("lower")
    table = accuracy_tables.same_learning_table(golden_runs)
    assert [row[-1] for row in table.rows] == [same.verdict, worse.verdict]


def test_same_learning_from_repeats_is_welch() -> None:
    def cell(gpus: int, bests: list[float]) -> list[FitRun]:
        runs = []
        for repeat, best in enumerate(bests):
            run = _hand_made_run(dict.fromkeys(LABELS, best), gpus=gpus)
            history = (run.history[0], dict(run.history[1], val_auc_mean=best))
            runs.append(FitRun(f"{gpus}-{repeat}", run.key, repeat, history, {}, None, None))
        return runs

    one, four = cell(1, [0.80, 0.82, 0.84]), cell(4, [0.70, 0.71, 0.72])
    item = accuracy.compare("gpus", one, four)
    # Means 0.82 and 0.71; variances 4e-4 and 1e-4 over 3: se^2 = 1.667e-4; Welch df =
    # (1.667e-4)^2 / ((1.333e-4)^2/2 + (3.333e-5)^2/2) = 2.94.
    df = (5e-4 / 3) ** 2 / ((4e-4 / 3) ** 2 / 2 + (1e-4 / 3) ** 2 / 2)
    assert df == pytest.approx(2.94, abs=0.01)
    half = t_quantile(df) * math.sqrt(4e-4 / 3 + 1e-4 / 3)
    assert item.difference == pytest.approx(-0.11)
    assert item.interval == pytest.approx((-0.11 - half, -0.11 + half))
    assert item.verdict.startswith("lower") and "Welch" in item.method
    overlap = accuracy.compare("gpus", one, cell(4, [0.79, 0.83, 0.86]))
    assert overlap.verdict == "no difference detected"


def test_weighted_auc_is_the_auc_of_the_resampled_examples() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 14)) < 0.3).astype(np.float32)
    labels[:, 13] = 0  # one class undefined: left out of the mean
    scores = np.round(rng.random((50, 14)) + 0.4 * labels, 1)  # rounded: many ties
    stored = decode(encode(scores, labels, order="split"))
    counts = rng.multinomial(50, np.full(50, 1 / 50))
    resampled = np.repeat(np.arange(50), counts)
    by_hand = per_class_auc(labels[resampled], scores[resampled])["mean"]
    weights = np.stack([np.ones(50), counts]).astype(np.float64)
    got = intervals.weighted_mean_auc(stored.ranks, stored.labels, weights)
    assert got[0] == pytest.approx(per_class_auc(labels, scores)["mean"])
    assert got[1] == pytest.approx(by_hand)


def test_bootstrap_of_a_run_against_itself_is_centred_and_paired_is_zero() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((200, 14)) < 0.3).astype(np.float32)
    stored = decode(encode(rng.random((200, 14)) + 0.3 * labels, labels, order="split"))
    first = intervals.bootstrap_mean_auc(stored.ranks, stored.labels, seed=1, resamples=300)
    again = intervals.bootstrap_mean_auc(stored.ranks, stored.labels, seed=1, resamples=300)
    other = intervals.bootstrap_mean_auc(stored.ranks, stored.labels, seed=2, resamples=300)
    assert first.shape == (300,)
    assert intervals.percentile_interval(again - first) == (0.0, 0.0)  # one seed: paired
    low, high = intervals.percentile_interval(other - first)  # independent resamples
    assert low < 0 < high and abs(low + high) < 0.5 * (high - low)
    # The spread is the AUC's sampling spread: about sqrt(2) x one run's.
    single = intervals.percentile_interval(first)
    assert 1.0 < (high - low) / (single[1] - single[0]) < 2.0


def test_auc_time_figure_draws_one_line_per_cell(golden_runs: list[FitRun]) -> None:
    figure = accuracy_plots.auc_time_figure(golden_runs)
    assert figure.name == "fit_auc_time.png" and figure.png.startswith(PNG_MAGIC)
    assert accuracy_plots.auc_time_figure([]).note == accuracy_tables.NO_FIT
    assert accuracy_tables.time_to_quality_table([]).missing == accuracy_tables.NO_FIT


def test_older_results_without_elapsed_sum_the_epochs(golden_runs: list[FitRun]) -> None:
    run = golden_runs[0]
    history = tuple({k: v for k, v in entry.items() if k != "elapsed_s"} for entry in run.history)
    times, recorded = accuracy.wall_times(history)
    assert not recorded and times == [10.0, 20.0, 30.0, 40.0]
    old = FitRun(run.path, run.key, run.repeat, history, run.fit, None, None)
    table = accuracy_tables.time_to_quality_table([old])
    assert any("sums of the epochs" in note for note in table.notes)
    assert any("do not record their validation split" in note for note in table.notes)


def test_stored_scores_round_trip_keeps_ties_and_order(tmp_path: Path) -> None:
    scores = np.array([[0.1, 0.5], [0.3, 0.5], [0.1, 0.2]], dtype=np.float32)
    labels = np.array([[0, 1], [1, 0], [1, 1]], dtype=np.float32)
    stored = decode(encode(scores, labels, order="ranks"))
    np.testing.assert_array_equal(stored.ranks, [[0, 1], [1, 1], [0, 0]])
    np.testing.assert_array_equal(stored.labels, labels)
    assert stored.order == "ranks" and stored.examples == 3


def test_a_bad_target_in_the_sweep_file_names_the_file(tmp_path: Path) -> None:
    from reports.load import ReportInputError

    root = write_fit_golden(tmp_path)
    (root / "sweep.yaml").write_text("name: fit-golden\nfit_target_auc: 1.5\n", encoding="utf-8")
    (results,) = load_results_sets([root])
    with pytest.raises(ReportInputError, match=r"sweep.yaml: fit_target_auc must be"):
        accuracy.target_of(results)


def test_report_html_holds_the_auc_time_figure(tmp_path: Path) -> None:
    import base64
    import re

    from reports.__main__ import main

    root = write_fit_golden(tmp_path / "in")
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    found = re.search(
        r'<img src="data:image/png;base64,([^"]+)" alt="Mean validation AUC against wall '
        r'time" data-figure="fit_auc_time.png"',
        html,
    )
    assert found and base64.b64decode(found.group(1)).startswith(PNG_MAGIC)
    assert (out / "figures" / "fit_auc_time.png").read_bytes().startswith(PNG_MAGIC)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## Time to accuracy" in markdown and "](figures/fit_auc_time.png)" in markdown
    for title in ("Time to quality", "Same learning?", "Per-class AUC at the best epoch"):
        assert title in html
    assert "not reached" in markdown and "Best mean validation AUC: 0." in markdown
    # The command line's target overrides the sweep file's: 0.60 is reached by every cell.
    lower = tmp_path / "lower"
    assert main([str(root), "--out", str(lower), "--fit-target-auc", "0.6"]) == 0
    assert "not reached" not in (lower / "report.md").read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as refused:
        main([str(root), "--out", str(lower), "--fit-target-auc", "1.5"])
    assert refused.value.code == 2
