"""The pipeline benchmark's printed tables (bench.measure.pipeline_benchmark): one row per
format from its summary, the targets judged, and the noise flag."""

from __future__ import annotations

from typing import Any

from bench.contract.noise import CV_REPEATS_NOISY
from bench.measure.bound import STAGES
from bench.measure.formats import BOUND_SLACK

__all__ = ["HEADERS", "NOISY", "STAGE_HEADERS", "met", "noise_note", "row", "stage_row"]

HEADERS = [
    "format",
    "naive img/s",
    "tuned img/s",
    "bound img/s",
    "tuned / bound",
    "(rounds)",
    "target",
    "met",
    "bound CV (rounds)",
    "naive / bound",
    "tuned first batch s",
    "tuned, host decoder in threads img/s",
    "tuned, TensorFlow decoder img/s",
    "tuned, normalised on host img/s",
    "bound CPU / tuned CPU per image",
    "reader alone, every core img/s",
    "tuned / reader alone",
    "core scaling (rounds)",
]
STAGE_HEADERS = ["format", *STAGES, "stages' sum ms/image", "bound CPU ms/image"]
NOISY = "NOISY"


def met(summary: dict[str, Any]) -> str:
    """Whether tuned / bound met its target: 'yes', 'no', 'BOUND WRONG' (over the slack the
    bound's own timing allows) or 'n/a'; ', NOISY' appended when the run was noisy."""
    ratio = summary["tuned_over_bound"]
    if ratio is None:
        verdict = "n/a"
    elif ratio > BOUND_SLACK:
        verdict = "BOUND WRONG"
    else:
        verdict = "yes" if ratio >= summary["target_tuned_over_bound"] else "no"
    return f"{verdict}, {NOISY}" if summary["noisy"] else verdict


def noise_note(summaries: list[dict[str, Any]]) -> str | None:
    """The line under the table that says which rows were noisy and what that means."""
    noisy = [summary["format"] for summary in summaries if summary["noisy"]]
    if not noisy:
        return None
    return (
        f"{NOISY}: {', '.join(noisy)}. The bound, measured afresh in every round, varied by "
        f"more than {CV_REPEATS_NOISY:.0%} (coefficient of variation of its rounds' rates, "
        "the report's rule for repeats): the machine's speed changed during the run, and "
        "the ratios to the bound are uncertain by about as much. Rerun on an idle machine."
    )


def row(summary: dict[str, Any]) -> list[Any]:
    target = summary["target_tuned_over_bound"]
    rounds = " ".join(
        "n/a" if r is None else f"{r:.2f}" for r in summary["tuned_over_bound_rounds"]
    )
    spread = summary["bound_cv_rounds"]
    return [
        summary["format"],
        summary["naive_images_per_sec"],
        summary["tuned_images_per_sec"],
        summary["bound_images_per_sec"],
        summary["tuned_over_bound"],
        rounds,
        f">= {target:.2f}, <= {BOUND_SLACK:.2f}",
        met(summary),
        "n/a" if spread is None else f"{spread:.1%}",
        summary["naive_over_bound"],
        summary["tuned_first_batch_s"],
        summary["tuned_threads_images_per_sec"],
        summary["tuned_tensorflow_images_per_sec"],
        summary["tuned_host_normalised_images_per_sec"],
        summary["bound_over_tuned_cpu"],
        summary["reader_alone_images_per_sec"],
        summary["tuned_over_reader_alone"],
        " ".join("n/a" if r is None else f"{r:.2f}" for r in summary["core_scaling_rounds"]),
    ]


def stage_row(summary: dict[str, Any]) -> list[Any]:
    costs = summary["stage_cpu_s_per_image"]
    return [
        summary["format"],
        *(costs[stage] * 1000 for stage in STAGES),
        summary["stages_cpu_s_per_image"] * 1000,
        summary["bound_cpu_s_per_image"] * 1000,
    ]
