"""Validating how a sweep launches: the `launcher:` section (kind, controller, hosts, MPI), the
`slurm:` section (for --submit) and the `input_service:` section (tf.data service workers).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.sweep.document_reader import DocumentReader
from bench.sweep.schema import (
    INPUT_SERVICE_KEYS,
    LAUNCHER_CONTROLLERS,
    LAUNCHER_KEYS,
    LAUNCHER_KINDS,
    NAME_PATTERN,
    SLURM_KEYS,
    BatchSpec,
    InputServiceSpec,
    KeyPath,
    LauncherSpec,
    parse_host,
)
from bench.sweep.setting_values import is_int, not_one_of
from bench.sweep.slurm import parse_time_limit


class LaunchSections(DocumentReader):
    """The launcher, slurm and input_service sections of a sweep document."""

    def launcher(self, value: Mapping[str, Any]) -> LauncherSpec:
        path: KeyPath = ("launcher",)
        self.unknown_keys(value, LAUNCHER_KEYS, path)
        kind = value.get("kind", "local")
        if kind not in LAUNCHER_KINDS:
            self.problem((*path, "kind"), not_one_of(kind, LAUNCHER_KINDS))
        controller = value.get("controller", "gloo")
        if controller not in LAUNCHER_CONTROLLERS:
            self.problem((*path, "controller"), f"must be gloo or mpi; got {controller!r}")
        slots = value.get("slots_per_host", 1)
        if not is_int(slots) or slots < 1:
            self.problem((*path, "slots_per_host"), f"must be a positive integer, got {slots!r}")
            slots = 1
        settings: dict[str, Any] = {"kind": kind, "controller": controller}
        settings["hosts"] = self.hosts(value.get("hosts"), slots)
        if value.get("hostfile") is not None:
            settings["hostfile"] = Path(str(value["hostfile"])).expanduser().absolute()
        for key in ("extra_args", "forward"):
            if key in value:
                settings[key] = tuple(self.strings(value[key], (*path, key)))
        for key in ("env", "mca"):
            if key in value:
                settings[key] = self.pairs(value[key], (*path, key))
        if "gpus_per_task" in value:
            gpus = value["gpus_per_task"]
            if gpus is not None and (not is_int(gpus) or gpus < 1):
                self.problem((*path, "gpus_per_task"), "must be a positive integer or null")
            settings["gpus_per_task"] = gpus
        if "kill_grace_s" in value:
            settings["kill_grace_s"] = self.number(
                value, "kill_grace_s", 10.0, minimum=0, path=path
            )
        if "mpi" in value:
            mpi = value["mpi"]
            if mpi is not None and not (isinstance(mpi, str) and NAME_PATTERN.match(mpi)):
                self.problem((*path, "mpi"), f"must be an srun MPI plugin or null, got {mpi!r}")
            settings["mpi"] = mpi
        return LauncherSpec(**settings)

    def slurm(self, value: Mapping[str, Any]) -> BatchSpec:
        """The `slurm:` section (for --submit)."""
        path: KeyPath = ("slurm",)
        self.unknown_keys(value, SLURM_KEYS, path)
        settings: dict[str, Any] = {}
        if value.get("time_limit") is not None:
            try:
                settings["time_limit_min"] = parse_time_limit(value["time_limit"])
            except ValueError as error:
                self.problem((*path, "time_limit"), str(error))
        for key in ("partition", "account", "qos", "job_name"):
            if value.get(key) is not None:
                if not isinstance(value[key], str) or not value[key].strip():
                    self.problem((*path, key), f"must be a non-empty string, got {value[key]!r}")
                else:
                    settings[key] = value[key]
        if "directives" in value:
            directives = self.strings(value["directives"], (*path, "directives"))
            for index, directive in enumerate(directives):
                if not directive.startswith("-"):
                    self.problem(
                        (*path, "directives", index),
                        f"must be an sbatch option (--name=value), got {directive!r}",
                    )
            settings["directives"] = tuple(directives)
        return BatchSpec(**settings)

    def hosts(self, value: Any, slots: int) -> tuple[tuple[str, int], ...]:
        if value is None:
            return (("localhost", slots),)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.problem(("launcher", "hosts"), "must be a list of host or host:slots")
            return (("localhost", slots),)
        hosts = []
        for index, item in enumerate(items):
            try:
                hosts.append(parse_host(str(item), slots))
            except ValueError as error:
                self.problem(("launcher", "hosts", index), str(error))
        return tuple(hosts)

    def input_service(self, value: Mapping[str, Any]) -> InputServiceSpec:
        path: KeyPath = ("input_service",)
        self.unknown_keys(value, INPUT_SERVICE_KEYS, path)
        settings: dict[str, Any] = {}
        if value.get("hosts") is not None:
            hosts = value["hosts"]
            items = hosts.split(",") if isinstance(hosts, str) else hosts
            settings["hosts"] = tuple(self.strings(items, (*path, "hosts")))
        if value.get("dispatcher_host") is not None:
            settings["dispatcher_host"] = str(value["dispatcher_host"])
        if value.get("base_port") is not None:
            port = value["base_port"]
            if not is_int(port) or not 1024 <= port <= 65000:
                self.problem((*path, "base_port"), f"must be a port in 1024..65000, got {port!r}")
            settings["base_port"] = port
        if settings.get("hosts") and "base_port" not in settings:
            self.problem((*path, "base_port"), "workers on other hosts need fixed ports")
        if "start_timeout_s" in value:
            settings["start_timeout_s"] = self.number(
                value, "start_timeout_s", 120.0, minimum=1, path=path
            )
        if "remote_command" in value:
            settings["remote_command"] = tuple(
                self.strings(value["remote_command"], (*path, "remote_command"))
            )
        return InputServiceSpec(**settings)
