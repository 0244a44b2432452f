"""Sweep files → cells: grid, include/exclude, dedupe, stable ids, and validation messages.

Planning is pure, so most cases are tables: a sweep text in, cell counts or error lines out.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.contract.cell import cell_hash
from bench.sweep.checks import check
from bench.sweep.load import load_sweep, parse_sweep
from bench.sweep.plan import Cell, plan
from bench.sweep.schema import SweepError

REPO = Path(__file__).resolve().parent.parent


def sweep_text(body: str, *, name: str = "t", launcher: str = "{kind: local}") -> str:
    return f"name: {name}\nlauncher: {launcher}\n" + textwrap.dedent(body)


def cells_of(body: str, **kwargs: str) -> list[Cell]:
    return plan(parse_sweep(sweep_text(body, **kwargs), environ={}))


def problems_of(text: str, tmp_path: Path, **kwargs: object) -> list[str]:
    """Every problem load + plan + check report for `text` saved as sweep.yaml."""
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    try:
        sweep = load_sweep(path, environ=kwargs.pop("environ", {}), **kwargs)  # type: ignore[arg-type]
    except SweepError as error:
        return error.problems
    return check(sweep, plan(sweep), environ={})


GRID_CASES = {
    "product": ("axes: {model: [resnet50, densenet121], batch_per_gpu: [1, 2, 4]}", 6),
    "scalar axis is one value": ("axes: {model: resnet50, batch_per_gpu: [1, 2]}", 2),
    "exclude one": (
        """
        axes: {model: [resnet50, densenet121], batch_per_gpu: [1, 2, 4]}
        exclude: [{model: resnet50, batch_per_gpu: 4}]
        """,
        5,
    ),
    "exclude list value matches any": (
        """
        axes: {model: [resnet50, densenet121], batch_per_gpu: [1, 2, 4]}
        exclude: [{batch_per_gpu: [2, 4]}]
        """,
        2,
    ),
    "include adds a sub-grid over the other axes": (
        """
        axes: {model: [resnet50, densenet121], batch_per_gpu: [1, 2]}
        include: [{batch_per_gpu: 16}]
        """,
        6,
    ),
    "include is not excluded and duplicates are dropped": (
        """
        axes: {model: [resnet50, densenet121], batch_per_gpu: [1, 2]}
        exclude: [{model: resnet50}]
        include: [{model: resnet50, batch_per_gpu: 1}, {model: densenet121, batch_per_gpu: 1}]
        """,
        3,
    ),
    "include a new setting": (
        """
        axes: {model: [resnet50]}
        include: [{xla: true}]
        """,
        2,
    ),
    "synthetic mode ignores format and pipeline": (
        """
        base: {data_dir: /data}
        conversions: {a: {}}
        axes:
          mode: [synthetic, train]
          data_format: [raw, tfrecord]
          conversion: [a]
          pipeline: [naive, tuned]
        """,
        1 + 4,
    ),
    "raw cells ignore the conversion": (
        """
        base: {data_dir: /data, mode: train}
        conversions: {a: {}, b: {encoding: jpeg}}
        axes: {data_format: [raw, tfrecord], conversion: [a, b]}
        """,
        1 + 2,
    ),
}


@pytest.mark.parametrize("body,count", list(GRID_CASES.values()), ids=list(GRID_CASES))
def test_grid_size(body: str, count: int) -> None:
    cells = cells_of(body)
    assert len(cells) == count
    assert len({cell.id for cell in cells}) == count


def test_cells_carry_their_settings_into_the_run_config() -> None:
    cells = cells_of(
        """
        base: {data_dir: /data, steps: 7, image_size: 64}
        conversions: {png64: {encoding: png, resize: 64}}
        axes: {mode: [train], data_format: [tfrecord], conversion: [png64], gpus: [1]}
        """
    )
    (cell,) = cells
    assert cell.config.steps == 7 and cell.config.image_size == 64
    assert cell.config.data_format == "tfrecord"
    assert cell.config.extra == {"conversion": "png64"}
    assert cell.config.records_dir is not None and "png64" in cell.config.records_dir.name
    assert cell.config.cell_id == cell.id and cell.config.sweep == "t"
    assert cell.config.output_dir == Path("results") / "t" / f"{cell.id}-{cell.slug}"
    assert cell.slug == "densenet121-tfrecord-png64-tuned-train-g1-b64-fp32-64px"
    assert cell.encoding == "png"


def test_ids_are_stable_and_depend_only_on_what_is_measured() -> None:
    body = "axes: {model: [resnet50], batch_per_gpu: [8], gpus: [1]}\nbase: {data_dir: /a}\n"
    (first,) = cells_of(body)
    (again,) = cells_of(body)
    (reordered,) = cells_of(
        "base: {data_dir: /a}\naxes: {gpus: [1], batch_per_gpu: [8], " "model: [resnet50]}\n"
    )
    (moved_data,) = cells_of(body.replace("/a", "/elsewhere"))
    (empty_rules,) = cells_of(body + "include: []\nexclude: []\n")
    (other,) = cells_of(body.replace("[8]", "[16]"))
    assert first.id == again.id == reordered.id == moved_data.id == empty_rules.id
    assert other.id != first.id
    with_default_steps = cells_of(body.replace("data_dir: /a", "data_dir: /a, steps: 50"))
    assert with_default_steps[0].id == first.id  # 50 is RunConfig's default
    # Pinned: existing results folders are resumed by id, so the hash must never drift
    # (sha256 of canonical JSON, first 10 hex digits; same on every Python version).
    assert cell_hash({"model": "resnet50", "batch_per_gpu": 8}) == "8357a9c2a2"
    assert first.id == cell_hash({"model": "resnet50", "batch_per_gpu": 8})


VALIDATION_CASES = {
    "unknown top-level key": (
        "name: t\naxis:\n  model: [resnet50]\n",
        ["sweep.yaml:2: axis: unknown key; did you mean 'axes'?"],
    ),
    "unknown cell key": (
        "name: t\nbase:\n  batch_per_gp: 8\n",
        ["sweep.yaml:3: base.batch_per_gp: unknown key; did you mean 'batch_per_gpu'?"],
    ),
    "bad value in an axis list": (
        "name: t\naxes:\n  model:\n    - resnet50\n    - densnet121\n",
        [
            "sweep.yaml:5: axes.model[1]: must be one of densenet121, resnet50; "
            "got 'densnet121'; did you mean 'densenet121'?"
        ],
    ),
    "fit target outside (0, 1]": (
        "name: t\nfit_target_auc: 84\n",
        ["sweep.yaml:2: fit_target_auc: must be a mean AUC in (0, 1], got 84"],
    ),
    "batch not positive": (
        "name: t\nbase: {batch_per_gpu: 0}\n",
        ["sweep.yaml:2: base.batch_per_gpu: must be at least 1, got 0"],
    ),
    "wrong type": (
        "name: t\nbase:\n  xla: 'yes'\n  steps: ten\n",
        [
            "sweep.yaml:3: base.xla: must be true or false",
            "sweep.yaml:4: base.steps: must be " "an integer",
        ],
    ),
    "too many gpus for the local launcher": (
        "name: t\nlauncher: {kind: local}\naxes:\n  mode: [synthetic]\n  gpus: [1, 2]\n",
        ["sweep.yaml:5: axes.gpus[1]: gpus 2 is more than 1 process(es): the local launcher"],
    ),
    "too many gpus for the host slots": (
        "name: t\nlauncher:\n  kind: horovodrun\n  hosts: [localhost:2]\n"
        "base: {mode: synthetic}\naxes:\n  gpus: [2, 4]\n",
        [
            "sweep.yaml:7: axes.gpus[1]: gpus 4 is more than 2 process(es): horovodrun hosts "
            "localhost:2"
        ],
    ),
    "missing data": (
        "name: t\nbase:\n  data_dir: /no/such/chestxray14\n  mode: train\n",
        ["sweep.yaml:3: base.data_dir: /no/such/chestxray14 does not exist"],
    ),
    "unknown conversion": (
        "name: t\nbase: {data_dir: /, mode: train, data_format: tfrecord}\n"
        "conversions: {png64: {}}\naxes:\n  conversion: [png46]\n",
        [
            "sweep.yaml:5: axes.conversion: no conversion named 'png46' under conversions:; "
            "did you mean 'png64'?"
        ],
    ),
    "bad launcher and conversion options": (
        "name: t\nlauncher: {kind: mpirn}\nconversions:\n  x: {encoding: jpg}\n",
        [
            "sweep.yaml:2: launcher.kind: must be one of local, horovodrun, mpirun, srun; got "
            "'mpirn'; did you mean 'mpirun'?",
            "sweep.yaml:4: conversions.x.encoding: must be one of png, jpeg, raw; got 'jpg'; "
            "did you mean 'jpeg'?",
        ],
    ),
    "unset environment variable": (
        "name: t\nbase:\n  data_dir: ${NO_SUCH_VARIABLE_X}\n",
        ["sweep.yaml:3: base.data_dir: environment variable NO_SUCH_VARIABLE_X is not set"],
    ),
    "invalid yaml": (
        "name: t\nbase: {steps: 1\n",
        ["sweep.yaml:3: not valid YAML"],
    ),
}


@pytest.mark.parametrize(
    "text,expected", list(VALIDATION_CASES.values()), ids=list(VALIDATION_CASES)
)
def test_validation_names_file_line_and_key(text: str, expected: list[str], tmp_path: Path) -> None:
    problems = problems_of(text, tmp_path)
    for fragment in expected:
        assert any(
            fragment in problem
            for problem in [p.replace(str(tmp_path) + "/", "") for p in problems]
        ), problems
    assert len(problems) == len(expected), problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        "name: t\n"
        "bas: {}\n"
        "axes:\n"
        "  model: [resnet5O]\n"
        "  batch_per_gpu: [8, -1]\n"
        "  gpus: [1, 3]\n"
    )
    problems = problems_of(text, tmp_path)
    lines = sorted(problem.split(":")[1] for problem in problems)
    assert lines == ["2", "4", "5"], problems  # gpus is checked once the values are valid
    # A valid grid with a cell 37 that cannot run fails before any cell runs.
    late = (
        "name: t\nbase: {mode: synthetic}\naxes:\n  batch_per_gpu: ["
        + ", ".join(str(n) for n in range(1, 37))
        + "]\ninclude:\n  - {batch_per_gpu: 64, gpus: 2}\n"
    )
    problems = problems_of(late, tmp_path)
    assert len(problems) == 1 and "sweep.yaml:6: include[0].gpus: gpus 2" in problems[0]


def test_overrides_and_environment_variables(tmp_path: Path) -> None:
    data = tmp_path / "cxr"
    data.mkdir()
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nbase:\n  data_dir: ${CXR:-/nowhere}\n  mode: train\n")
    sweep = load_sweep(path, environ={"CXR": str(data)})
    assert sweep.data_dir() == data
    overridden = load_sweep(
        path, environ={}, overrides=["base.data_dir=" + str(data), "axes.gpus=[1]"]
    )
    assert overridden.data_dir() == data and overridden.axes["gpus"] == (1,)
    assert check(overridden, plan(overridden), environ={}) == []
    with pytest.raises(SweepError) as raised:
        load_sweep(path, environ={}, overrides=["base.steps=0"])
    assert "--set base.steps: base.steps: must be at least 1" in str(raised.value)


@pytest.mark.parametrize("name", ["default", "chexnet-poster", "modern-gpus", "fit-smoke"])
def test_shipped_sweeps_validate(name: str, tmp_path: Path) -> None:
    synthetic = name in ("default", "fit-smoke")
    overrides = [] if synthetic else [f"base.data_dir={tmp_path}"]
    sweep = load_sweep(
        REPO / "sweeps" / f"{name}.yaml",
        overrides=overrides,
        environ={},
        data_cache=tmp_path / "cache",
    )
    cells = plan(sweep)
    # srun outside an allocation only passes as a dry run.
    assert check(sweep, cells, environ={}, dry_run=True) == []
    assert len({cell.slug for cell in cells}) == len(cells)
    models = {cell.settings["model"] for cell in cells}
    # The client's grid: both models; the fit smoke sweep trains CheXNet's only.
    assert models == ({"densenet121"} if name == "fit-smoke" else {"densenet121", "resnet50"})
    if name == "default":
        assert 8 <= len(cells) <= 12
        assert {cell.gpus for cell in cells} == {1, 2}
        assert {c.settings["data_format"] for c in cells if c.settings["mode"] != "synthetic"} == {
            "raw",
            "tfrecord",
        }
        assert {cell.settings["mode"] for cell in cells} == {"synthetic", "pipeline", "train"}
    if name == "chexnet-poster":
        assert {cell.gpus for cell in cells} == {1, 2, 4, 8}
        assert all(cell.settings["batch_per_gpu"] == 64 for cell in cells)
        assert {c.settings["data_format"] for c in cells if c.settings["mode"] == "train"} == {
            "raw",
            "tfrecord",
        }
        assert all(cell.nodes == 2 for cell in cells if cell.gpus == 8)
        fit = [cell for cell in cells if cell.settings["mode"] == "fit"]
        assert {(c.settings["model"], c.settings["data_format"], c.gpus) for c in fit} == {
            (model, data_format, gpus)
            for model in ("densenet121", "resnet50")
            for data_format in ("raw", "tfrecord")
            for gpus in (1, 2, 4, 8)
        }
        assert all(c.settings["epochs"] == 15 and not c.settings["scale_lr"] for c in fit)
    if name == "fit-smoke":
        assert {(c.settings["data_format"], c.gpus) for c in cells} == {
            ("raw", 1),
            ("tfrecord", 1),
            ("tfrecord", 2),
        }
        assert all(c.settings["mode"] == "fit" and c.settings["image_size"] == 64 for c in cells)
    # The target is the report's: it is no cell setting, so changing it reruns nothing.
    assert sweep.fit_target_auc == {"chexnet-poster": 0.80, "fit-smoke": 0.75}.get(name)
    assert all("fit_target_auc" not in cell.settings for cell in cells)
    if name == "modern-gpus":
        assert {cell.encoding for cell in cells} == {None, "png", "jpeg", "raw"}
        assert all(cell.settings["precision"] == "mixed_bfloat16" for cell in cells)
