"""Sample the real GPUs with the harness's sampler and print what it saw.

    python -m bench.telemetry_check [--seconds 20] [--period 0.5] [--no-gpm]

For checking NVML (and GPM on Hopper and later) on a GPU node, under whatever load runs
there. Needs only the standard library, psutil and nvidia-ml-py: no TensorFlow.
Exit codes: 0 samples taken, 1 NVML unavailable or no samples, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.job.telemetry import GPM_METRICS, HostSampler, NvmlSampler, summarise


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.telemetry_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to sample")
    parser.add_argument("--period", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--no-gpm", action="store_true", help="skip GPM metrics")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.period <= 0:
        parser.error("--seconds and --period must be positive")
    return args


def _format(stats: dict[str, Any] | None, scale: float = 1.0, unit: str = "") -> str:
    if stats is None:
        return "missing"
    return f"mean {stats['mean'] / scale:.1f}{unit} max {stats['max'] / scale:.1f}{unit}"


def report_lines(samples: dict[str, Any], host: dict[str, Any], elapsed_s: float) -> list[str]:
    summary = summarise(samples["devices"], [host], None)
    lines = [f"sampled {elapsed_s:.1f} s at period {samples['period_s']} s"]
    for device, stats in zip(samples["devices"], summary["gpus"], strict=True):
        lines.append(
            f"GPU {device['index']} {device['name']} ({device['uuid']}): "
            f"{len(device['t_s'])} samples, {device['error_count']} errors"
        )
        lines.append(f"  utilization  {_format(stats['utilization_pct'], unit=' %')}")
        lines.append(f"  memory used  {_format(stats['memory_used_bytes'], 2**30, ' GiB')}")
        lines.append(f"  power        {_format(stats['power_w'], unit=' W')}")
        lines.append(f"  SM clock     {_format(stats['sm_clock_mhz'], unit=' MHz')}")
        if device["gpm"] is None:
            lines.append("  GPM          not supported on this GPU/driver")
        else:
            lines.append(f"  GPM          {len(device['gpm']['t_s'])} intervals")
            for name in GPM_METRICS:
                lines.append(f"    {name:18} {_format(stats[name], unit=' %')}")
        for error in device["errors"][:3]:
            lines.append(f"  error: {error['query']}: {error['error']}")
    host_stats = summary["hosts"][0]
    lines.append(
        f"host {host['host']}: CPU {_format(host_stats['cpu_pct'], unit=' %')}, "
        f"memory used {_format(host_stats['memory_used_bytes'], 2**30, ' GiB')}"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sampler = NvmlSampler(period_s=args.period, use_gpm=not args.no_gpm)
    host = HostSampler(period_s=args.period)
    began = time.monotonic()
    sampler.start()
    if sampler.unavailable is not None:
        print(f"telemetry_check: {sampler.unavailable}", file=sys.stderr)
        return 1
    host.start()
    try:
        time.sleep(args.seconds)
    finally:
        sampler.stop()
        host.stop()
    samples = sampler.samples()
    if samples is None or not any(device["t_s"] for device in samples["devices"]):
        print("telemetry_check: NVML started but no samples were taken", file=sys.stderr)
        return 1
    for line in report_lines(samples, host.samples(), time.monotonic() - began):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
