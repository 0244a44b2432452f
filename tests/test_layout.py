"""The tree keeps the architecture: one-way imports between the stages, no import cycle
(even one deferred into a function), the Keras switch set before TensorFlow loads, and a
line of help for every `python -m bench.run` option."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.contract.config import HELP, RunConfig, parser

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "converters", "reports")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every project module -> the project modules it imports, at any depth of its code."""
    modules = {
        _module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                # The longest project module the import names (a package or a module).
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            # A package's own __init__ importing its submodules is not a cycle of stages.
            if node.startswith(child + "."):
                continue
            if state.get(child) == 1:
                return stack[stack.index(child) :] + [child]
            if state.get(child) is None and (found := visit(child)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_even_deferred() -> None:
    graph = _imports()
    assert "bench.sweep.plan" in graph and "bench.job.main" in graph  # the walk found the tree
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("converters", ("bench",)),
        ("reports", ("bench.sweep", "bench.job", "bench.input", "bench.measure")),
        ("bench.input", ("bench.sweep", "bench.job", "bench.measure")),
        ("bench.contract", ("bench.sweep", "bench.job", "bench.input", "bench.measure")),
        ("bench.sweep", ("bench.job", "bench.input", "bench.measure")),
        ("bench.service", ("bench.sweep", "bench.job", "bench.input", "bench.measure")),
    ],
)
def test_stages_import_one_way(importer: str, forbidden: tuple[str, ...]) -> None:
    graph = _imports()
    wrong = {
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module == importer or module.startswith(importer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    }
    assert not wrong, sorted(wrong)


def test_the_keras_switch_is_set_before_tensorflow_loads() -> None:
    """bench/__init__.py sets TF_USE_LEGACY_KERAS; any bench.* import runs it first. Without
    it `tf.keras` would be Keras 3, under which Horovod silently stops averaging."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(REPO)
    code = (
        "import os, bench.job.engine, tensorflow as tf;"
        "print(os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    flag, keras = done.stdout.split()
    assert flag == "1"
    assert keras.startswith("tf_keras"), keras


def test_every_run_option_has_help() -> None:
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    assert sorted(HELP) == sorted(fields)
    text = parser().format_help()
    for name in fields:
        assert HELP[name].split()[0] in text, name


def test_the_data_cache_defaults_to_the_repository_data_folder() -> None:
    from bench.sweep.load import default_data_cache

    assert default_data_cache({}) == REPO / "data"
    assert default_data_cache({"CHEXBENCH_DATA": "/tmp/x"}) == Path("/tmp/x")
