"""A report figure and how every figure is drawn: `Figure` (file name, title, caption, and PNG
or the note saying why there is none), the fixed style and colours, and PNG bytes that are
byte-for-byte repeatable (matplotlib Agg, no display).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure as MplFigure

DPI = 110


# Fixed style so that output does not depend on a user's matplotlibrc.
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "path.simplify": False,
    "svg.hashsalt": "chexbench",
}
COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)


@dataclass(frozen=True)
class Figure:
    """A figure for the report: its file name, title, caption, and PNG or why not."""

    name: str
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None


def panels(count: int) -> tuple[MplFigure, list[Any]]:
    figure, axes = plt.subplots(1, count, figsize=(3.9 * count + 0.6, 3.6), squeeze=False)
    return figure, list(axes[0])


def color_cycle() -> Iterable[str]:
    while True:
        yield from COLORS


def png_bytes(figure: MplFigure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
