"""sweeps/fit-smoke.yaml end to end on CPU: real bench.run fit jobs, the real report.

Shrunk with --set (fewer images); most of its minutes are TensorFlow start-up and tracing
DenseNet121's training step, once per cell (the 2-process cell traces Horovod's gradient
step too). The same run checks that fit mode learns: the labels travel through both
sources (the two one-process cells), so no other test traces DenseNet's fit for that.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from bench.contract import results

REPO = Path(__file__).resolve().parent.parent
# Enough epochs at 64 px for validation AUC to rise clearly above chance: DenseNet121
# (CheXNet) at 64 px, as the synthetic marks' finest pattern has a period of a tenth of the
# side, which 32 px would blur away.
EPOCHS = 4


@pytest.mark.slow
@pytest.mark.horovod
@pytest.mark.timeout(1800)  # three TF start-ups and DenseNet tracings on 2 busy cores
def test_fit_smoke_sweep_shows_time_to_accuracy(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    from bench.sweep import parse_args, run

    env = {**subprocess_env, "CHEXBENCH_DATA": str(tmp_path / "cache")}
    argv = [
        str(REPO / "sweeps" / "fit-smoke.yaml"),
        "--results",
        str(tmp_path / "results"),
        "--no-progress",
        "--set",
        "base.synthetic.images=240",
        "--set",
        f"base.epochs={EPOCHS}",
    ]
    out, err = io.StringIO(), io.StringIO()
    code = run(parse_args(argv), environ=env, out=out, err=err)
    sweep_dir = tmp_path / "results" / "fit-smoke"
    logs = "\n".join(p.read_text()[-3000:] for p in sweep_dir.glob("*/run-0.log"))
    assert code == 0, err.getvalue() + logs
    found = [results.load_result(path) for path in results.find_results(sweep_dir)]
    assert len(found) == 3 and {r["status"] for r in found} == {"ok"}
    for result in found:
        fit = result["details"]["fit"]
        history = fit["history"]
        assert len(history) == EPOCHS and fit["best_validation"]["examples"] > 0
        assert all("elapsed_s" in entry for entry in history)
        assert all(len(entry["val_auc_per_class"]) == 14 for entry in history)
        assert fit["best_val_auc_mean"] == max(entry["val_auc_mean"] for entry in history)
        assert fit["checkpoint_rank"] == 0 and Path(fit["checkpoint"]).is_file()
        split = fit["validation_dataset"]["images"]
        assert {entry["val_examples"] for entry in fit["history"]} == {split}
        assert sum(fit["validation_examples_per_rank"]) == split
    # Labels travel through both sources: validation AUC clearly above chance on one
    # process, raw files and TFRecords alike.
    one = {r["cell"]["data_format"]: r["details"]["fit"] for r in found if r["cell"]["gpus"] == 1}
    assert sorted(one) == ["raw", "tfrecord"]
    for data_format, fit in one.items():
        history = fit["history"]
        assert history[0]["val_examples"] > 40, data_format
        aucs = [entry["val_auc_mean"] for entry in history]
        assert fit["best_val_auc_mean"] > 0.6, (data_format, aucs)
    two = next(r for r in found if r["cell"]["gpus"] == 2)["details"]["fit"]
    assert len(two["validation_examples_per_rank"]) == 2
    markdown = (sweep_dir / "report.md").read_text()
    html = (sweep_dir / "report.html").read_text()
    assert "## Time to accuracy" in markdown
    for title in ("Time to quality", "Same learning?", "Per-class AUC at the best epoch"):
        assert title in markdown and title in html
    assert 'data-figure="fit_auc_time.png"' in html
    assert (sweep_dir / "figures" / "fit_auc_time.png").is_file()
    assert "Rajpurkar et al. 2017" in markdown and "not comparable" in markdown
    assert "written by rank 0 only" in markdown
    assert "every validation example exactly once" in markdown
    # Both comparisons are there, each with an interval or the reason it has none.
    same = markdown.split("### Same learning?")[1].split("###")[0]
    assert "data format" in same and "GPU count" in same
    assert re.search(r"no difference detected|interval excludes zero|n/a \(", same)
