"""The time-to-accuracy figure: mean validation AUC against wall time, one line per fit cell.

A faster input pipeline shows as a curve shifted left; a configuration that changed what the
model learns, as a curve that ends lower.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from reports import accuracy
from reports.accuracy import FitRun
from reports.accuracy_tables import NO_FIT, cell_name, labelled_cells, per_model_keys
from reports.figure import STYLE, Figure, color_cycle, panels, png_bytes
from reports.frame import CELL_KEYS

FIGURE_NAME = "fit_auc_time.png"


def auc_time_figure(found: Sequence[FitRun]) -> Figure:
    title = "Mean validation AUC against wall time"
    caption = (
        "Mean validation AUC after each epoch against seconds since training started, one "
        "line per fit cell (further repeats thinner, same colour), one panel per model; a "
        "star marks the best epoch, a dashed grey line the target mean AUC (fit_target_auc)."
    )
    if not found:
        return Figure(FIGURE_NAME, title, caption, note=NO_FIT)
    frame = labelled_cells(found)
    cells = accuracy.by_cell(found)
    models = sorted(set(frame["model"]))
    with plt.rc_context(STYLE):
        figure, axes = panels(len(models))
        for axis, model in zip(axes, models, strict=True):
            chosen = frame[frame["model"] == model]
            keys = per_model_keys(chosen)
            targets = set()
            for color, (_, cell) in zip(color_cycle(), chosen.iterrows(), strict=False):
                runs = sorted(cells[tuple(cell[k] for k in CELL_KEYS)], key=lambda r: r.repeat)
                for order, run in enumerate(runs):
                    _draw(axis, run, color, cell_name(cell, keys) if order == 0 else None, order)
                    if run.target_auc is not None:
                        targets.add(run.target_auc)
            for target in sorted(targets):
                axis.axhline(target, color="#7f7f7f", linestyle="--", linewidth=0.9)
            axis.set_title(model, loc="left")
            axis.set_xlabel("wall time since training started (s)")
            axis.set_ylabel("mean validation AUC")
            axis.set_xlim(left=0)
            axis.legend(loc="lower right")
        return Figure(FIGURE_NAME, title, caption, png_bytes(figure))


def _draw(axis: object, run: FitRun, color: str, label: str | None, order: int) -> None:
    times, _ = accuracy.wall_times(run.history)
    points = [
        (time, entry.get("val_auc_mean"))
        for time, entry in zip(times, run.history, strict=True)
        if isinstance(entry.get("val_auc_mean"), int | float)
    ]
    if not points:
        return
    xs, ys = zip(*points, strict=True)
    axis.plot(  # type: ignore[attr-defined]
        xs,
        ys,
        marker="o",
        markersize=3,
        color=color,
        linewidth=1.5 if order == 0 else 0.8,
        alpha=1.0 if order == 0 else 0.6,
        label=label,
    )
    best = accuracy.quality(run)
    if best.best_wall_s is not None:
        axis.plot(  # type: ignore[attr-defined]
            [best.best_wall_s], [best.best_auc], marker="*", markersize=9, color=color
        )
