"""Validating a loaded sweep document: every problem at once, each with file, line and key.

`Reader(...).sweep(document, data_cache)` turns the document into a `Sweep`, appending a
message per problem. The parts: bench.sweep.document_reader (the problem log, generic
readers), bench.sweep.launch_sections (launcher, slurm, input_service) and
bench.sweep.setting_values (`check_value(key, value)`, the rule for one cell setting).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.sweep.launch_sections import LaunchSections
from bench.sweep.schema import (
    CELL_KEYS,
    CONVERSION_KEYS,
    NAME_PATTERN,
    SYNTHETIC_KEYS,
    TOP_KEYS,
    ConversionSpec,
    KeyPath,
    Sweep,
    SyntheticSpec,
    default_worker,
)
from bench.sweep.setting_values import (
    check_conversion_value,
    check_int,
    check_value,
    is_number,
    not_one_of,
)


class Reader(LaunchSections):
    """Turns the document into a Sweep, appending every problem it finds."""

    def sweep(self, document: dict[str, Any], data_cache: Path) -> Sweep:
        """The sweep as read; where problems were found (self.problems), a partial one made
        of the valid settings, for the checks that need a plan."""
        self.unknown_keys(document, TOP_KEYS, ())
        name = document.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            self.problem(("name",), f"needs a name of letters, digits, '-', '_', '.'; got {name!r}")
        base = dict(self.mapping(document, "base"))
        synthetic = self.synthetic(base.pop("synthetic", None))
        if synthetic is not None and base.get("data_dir") is not None:
            self.problem(("base", "synthetic"), "give either data_dir or synthetic, not both")
        if base.get("data_dir") is not None and isinstance(base["data_dir"], str):
            base["data_dir"] = str(Path(base["data_dir"]).expanduser().absolute())
        # Only the valid settings: with problems, the sweep is still planned and checked
        # (capacity, conversions, data) so that one run reports every problem.
        base = {key: values[0] for key, values in self.cell_values(base, ("base",), False).items()}
        axes = {
            key: tuple(values)
            for key, values in self.cell_values(
                self.mapping(document, "axes"), ("axes",), True
            ).items()
        }
        include = tuple(self.rules(document, "include"))
        exclude = tuple(self.rules(document, "exclude"))
        conversions = self.conversions(self.mapping(document, "conversions"))
        launcher = self.launcher(self.mapping(document, "launcher"))
        timeout_s = self.number(document, "timeout_s", 3600.0, minimum=1)
        repeats = int(self.number(document, "repeats", 1, minimum=1, integer=True))
        worker = self.worker(document.get("worker"))
        batch = self.slurm(self.mapping(document, "slurm"))
        fit_target_auc = self.target(document.get("fit_target_auc"))
        input_service = self.input_service(self.mapping(document, "input_service"))
        demand = self.demand(self.mapping(document, "demand"))
        # With problems the sweep is still returned (as SweepError.partial), from its valid
        # settings, so that planning and checks can add theirs to the same report.
        return Sweep(
            name=name if isinstance(name, str) else "unnamed",
            source=self.source,
            document=document,
            base=base,
            axes=axes,
            include=include,
            exclude=exclude,
            synthetic=synthetic,
            conversions=conversions,
            launcher=launcher,
            timeout_s=timeout_s,
            repeats=repeats,
            worker=worker,
            data_cache=data_cache,
            locations=dict(self.locations),
            slurm=batch,
            fit_target_auc=fit_target_auc,
            input_service=input_service,
            demand=demand,
        )

    def cell_values(
        self, values: Mapping[str, Any], path: KeyPath, allow_lists: bool
    ) -> dict[str, list[Any]]:
        """Check each cell setting; with allow_lists a scalar reads as a one-item list."""
        self.unknown_keys(values, (*CELL_KEYS, *(() if allow_lists else ("synthetic",))), path)
        checked: dict[str, list[Any]] = {}
        for key, value in values.items():
            if key not in CELL_KEYS:
                continue
            items = value if allow_lists and isinstance(value, list) else [value]
            if allow_lists and isinstance(value, list) and not value:
                self.problem((*path, key), "an empty list gives no cells")
            valid = []
            for index, item in enumerate(items):
                where = (*path, key, index) if isinstance(value, list) else (*path, key)
                message = check_value(key, item)
                if message:
                    self.problem(where, message)
                else:
                    valid.append(item)
            if valid:  # a bad value is reported above and left out of what is planned
                checked[key] = valid
        return checked

    def rules(self, document: Mapping[str, Any], key: str) -> list[dict[str, tuple[Any, ...]]]:
        value = document.get(key) or []
        if not isinstance(value, list):
            self.problem((key,), "must be a list of partial cells")
            return []
        rules = []
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or not entry:
                self.problem((key, index), "must be a non-empty mapping of cell settings")
                continue
            checked = self.cell_values(entry, (key, index), allow_lists=True)
            rules.append({name: tuple(items) for name, items in checked.items()})
        return rules

    def synthetic(self, value: Any) -> SyntheticSpec | None:
        if value is None:
            return None
        path: KeyPath = ("base", "synthetic")
        if value is True:
            value = {}
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping {images, size, seed}")
            return None
        self.unknown_keys(value, tuple(SYNTHETIC_KEYS), path)
        values = {**SYNTHETIC_KEYS, **{k: v for k, v in value.items() if k in SYNTHETIC_KEYS}}
        for key in ("images", "size", "seed"):
            message = check_int(key, values[key], 0 if key == "seed" else 1)
            if message:
                self.problem((*path, key), message)
        if values["layout"] not in ("archive", "flat"):
            self.problem((*path, "layout"), not_one_of(values["layout"], ("archive", "flat")))
        return SyntheticSpec(**values)

    def conversions(self, value: Mapping[str, Any]) -> dict[str, ConversionSpec]:
        specs = {}
        for name, settings in value.items():
            path: KeyPath = ("conversions", name)
            if not NAME_PATTERN.match(str(name)):
                self.problem(path, "a conversion name is letters, digits, '-', '_', '.'")
            settings = settings or {}
            if not isinstance(settings, dict):
                self.problem(path, "must be a mapping of conversion options")
                continue
            self.unknown_keys(settings, CONVERSION_KEYS, path)
            known = {k: v for k, v in settings.items() if k in CONVERSION_KEYS}
            for key, item in known.items():
                message = check_conversion_value(key, item)
                if message:
                    self.problem((*path, key), message)
            if "splits" in known and isinstance(known["splits"], list):
                known["splits"] = tuple(known["splits"])
            specs[str(name)] = ConversionSpec(name=str(name), **known)
        return specs

    def demand(self, value: Mapping[str, Any]) -> dict[str, float]:
        """{name: images/s one GPU consumes}: reference rates for the capacity report."""
        rates = {}
        for name, rate in value.items():
            if isinstance(rate, bool) or not is_number(rate) or rate <= 0:
                self.problem(("demand", name), f"must be a positive images/s, got {rate!r}")
                continue
            rates[str(name)] = float(rate)
        return rates

    def target(self, value: Any) -> float | None:
        """`fit_target_auc`: a mean AUC in (0, 1], or absent."""
        if value is None:
            return None
        if not is_number(value) or not 0 < value <= 1:
            self.problem(("fit_target_auc",), f"must be a mean AUC in (0, 1], got {value!r}")
            return None
        return float(value)

    def worker(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return default_worker()
        if isinstance(value, str):
            value = [value]
        words = self.strings(value, ("worker",))
        if not words:
            self.problem(("worker",), "must be a non-empty list: the command every rank runs")
        return tuple(words)
