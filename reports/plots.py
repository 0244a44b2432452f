"""The report's figures, as PNG bytes (matplotlib Agg, no display, byte-for-byte repeatable).

A figure that has nothing to plot keeps a `note` saying why instead of its PNG. The parts:
reports.figure (`Figure`, style, PNG bytes), reports.plot_series (lines, legends, error bars),
reports.scaling_plots (scaling, efficiency, supply against demand), reports.format_plots
(raw against TFRecord), reports.utilization_plot (GPU utilization over time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from reports.figure import STYLE, Figure
from reports.format_plots import formats_figure, speedup_figure
from reports.scaling_plots import efficiency_figure, scaling_figure, supply_demand_figure
from reports.utilization_plot import utilization_figure


def all_figures(
    cells: pd.DataFrame, runs: pd.DataFrame, results: Mapping[str, dict[str, Any]]
) -> list[Figure]:
    with plt.rc_context(STYLE):
        return [
            scaling_figure(cells),
            formats_figure(cells),
            efficiency_figure(cells),
            speedup_figure(cells),
            supply_demand_figure(cells),
            utilization_figure(cells, runs, results),
        ]
