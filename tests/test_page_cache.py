"""Page-cache control: residency measured with mincore, eviction, warming, mounts.

Every check writes its own files on a real (block-device) file system and measures the
page cache before and after; nothing is assumed. The ordinary-user checks run the same
code as `nobody` (setpriv) when the tests run as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.input import page_cache

REPO = Path(__file__).resolve().parent.parent
FILE_BYTES = 4 << 20  # 4 MiB per file: 1024 pages


def _cache_keeping_fs(folder: Path) -> bool:
    """tmpfs and ramfs hold files in the page cache: nothing there can be evicted."""
    mount = page_cache.mount_of(folder)
    return mount is not None and mount.fs_type not in ("tmpfs", "ramfs")


@pytest.fixture
def data_folder() -> Path:
    """A folder on a disk-backed file system that `nobody` can read (mode 755)."""
    candidates = [Path(tempfile.gettempdir()), REPO]
    for base in candidates:
        if _cache_keeping_fs(base) and os.access(base, os.W_OK):
            folder = Path(tempfile.mkdtemp(prefix="page-cache-", dir=base))
            folder.chmod(0o755)
            yield folder
            shutil.rmtree(folder, ignore_errors=True)
            return
    pytest.skip("no disk-backed, writable folder here (tmpfs keeps every page resident)")


def _write_files(folder: Path, count: int, size: int = FILE_BYTES) -> list[str]:
    paths = []
    for index in range(count):
        path = folder / f"file-{index}.bin"
        path.write_bytes(os.urandom(size))
        path.chmod(0o644)
        paths.append(str(path))
    return paths


def test_residency_after_write_evict_and_warm(data_folder: Path) -> None:
    paths = _write_files(data_folder, 3)
    written = page_cache.residency(paths)
    assert written.files == 3 and written.bytes == 3 * FILE_BYTES
    assert written.fraction == pytest.approx(1.0)  # just written: dirty, in the cache

    assert page_cache.evict(paths) == []  # flushes the dirty pages, then drops them
    evicted = page_cache.residency(paths)
    assert evicted.fraction is not None and evicted.fraction < 0.02

    bytes_read, problems = page_cache.warm(paths[:2])
    assert (bytes_read, problems) == (2 * FILE_BYTES, [])
    per_file = [page_cache.file_residency(path)[1] for path in paths]
    assert per_file[0] == FILE_BYTES and per_file[1] == FILE_BYTES
    assert per_file[2] is not None and per_file[2] < FILE_BYTES // 50  # not read: still cold


def test_residency_matches_fincore(data_folder: Path) -> None:
    """mincore through ctypes agrees with util-linux fincore on a half-read file."""
    fincore = shutil.which("fincore")
    if fincore is None:
        pytest.skip("fincore (util-linux) not installed")
    (path,) = _write_files(data_folder, 1)
    page_cache.evict([path])
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead racing the checks
        os.pread(fd, FILE_BYTES // 2, 0)
    finally:
        os.close(fd)
    ours = page_cache.file_residency(path)[1]
    out = subprocess.run(
        [fincore, "--bytes", "--noheadings", "--output", "RES", path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ours == int(out.stdout.split()[0])
    assert FILE_BYTES // 2 <= ours < FILE_BYTES


def test_prepare_cold_and_warm_records(data_folder: Path) -> None:
    paths = _write_files(data_folder, 2)
    cold = page_cache.prepare(paths, "cold")
    assert cold["state"] == "cold" and "DONTNEED" in cold["action"]
    assert cold["before"]["fraction"] == pytest.approx(1.0)
    assert cold["after"]["fraction"] < 0.02
    assert cold["files"] == 2 and cold["problem_count"] == 0
    assert cold["larger_than_memory"] is False
    json.dumps(cold)  # stored in a result as is

    warm = page_cache.prepare(paths, "warm")
    assert warm["before"]["fraction"] < 0.02
    assert warm["after"]["fraction"] == pytest.approx(1.0)
    assert warm["bytes_read"] == 2 * FILE_BYTES and warm["note"] is None

    with pytest.raises(ValueError, match="warm or cold"):
        page_cache.prepare(paths, "lukewarm")  # type: ignore[arg-type]


def test_missing_file_is_reported_not_fatal(data_folder: Path) -> None:
    (path,) = _write_files(data_folder, 1)
    missing = str(data_folder / "gone.bin")
    record = page_cache.prepare([path, missing], "cold")
    assert record["after"]["unreadable"] == 1 and record["after"]["files"] == 1
    assert record["problem_count"] == 1 and "gone.bin" in record["problems"][0]


def test_drop_all_without_root_says_why(data_folder: Path, monkeypatch) -> None:
    paths = _write_files(data_folder, 1)
    monkeypatch.setattr(page_cache.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(page_cache, "cache_state_visible", lambda path, uid=None: True)
    record = page_cache.prepare(paths, "cold", drop_all=True)
    assert "needs root" in record["note"]
    assert record["after"]["fraction"] < 0.02  # per-file eviction still ran


_AS_USER = """
import json, sys
from bench.input import page_cache
paths = sys.argv[1:]
record = page_cache.prepare(paths, "cold", drop_all=True)
print(json.dumps(record))
"""


def _as_nobody(args: list[str]) -> dict:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        # Already an ordinary user: the other tests ran as one.
        command = [sys.executable, "-c", _AS_USER, *args]
    elif setpriv is None:
        pytest.skip("running as root without setpriv: cannot become an ordinary user")
    else:
        command = [
            setpriv,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            _AS_USER,
            *args,
        ]
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME="/tmp")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ordinary_user_evicts_a_file_it_only_reads(data_folder: Path) -> None:
    """Per-file eviction needs no root and no ownership; the kernel hides the state."""
    paths = _write_files(data_folder, 2)
    page_cache.warm(paths)
    record = _as_nobody(paths)
    assert record["problem_count"] == 0
    if os.geteuid() == 0:
        # nobody neither owns nor may write root's files: their state is not measured ...
        assert record["after"]["unmeasured_files"] == 2
        assert record["after"]["fraction"] is None
        assert "hidden" in record["note"] and "needs root" in record["note"]
    # ... but they were evicted: measured here, by the owner.
    assert page_cache.residency(paths).fraction < 0.02


def test_ordinary_user_measures_its_own_files(data_folder: Path) -> None:
    paths = _write_files(data_folder, 1)
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv")
        os.chown(paths[0], 65534, -1)  # nobody owns it now
    page_cache.warm(paths)
    record = _as_nobody(paths)
    assert record["before"]["fraction"] == pytest.approx(1.0)
    assert record["after"]["unmeasured_files"] == 0
    assert record["after"]["fraction"] < 0.02


MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw
30 22 0:40 / /data rw,nosuid - nfs4 filer:/export/data rw,vers=4.2
31 30 0:41 / /data/lustre\040fs rw - lustre 10.0.0.1@o2ib:/scratch rw,flock
40 22 0:50 / /tmp rw - tmpfs tmpfs rw
"""


def test_mount_of_picks_the_deepest_mount() -> None:
    where = page_cache.mount_of("/data/lustre fs/chestxray", mountinfo=MOUNTINFO)
    assert where is not None
    assert (where.fs_type, where.source, where.mount_point) == (
        "lustre",
        "10.0.0.1@o2ib:/scratch",
        "/data/lustre fs",
    )
    nfs = page_cache.mount_of("/data/records", mountinfo=MOUNTINFO)
    assert nfs is not None and (nfs.fs_type, nfs.source) == ("nfs4", "filer:/export/data")
    assert page_cache.mount_of("/datasets", mountinfo=MOUNTINFO).fs_type == "ext4"  # not /data
    assert page_cache.mount_of("/", mountinfo=MOUNTINFO).source == "/dev/nvme0n1p1"


def test_storage_facts_of_this_machine(tmp_path: Path) -> None:
    facts = page_cache.storage_facts({"data_dir": tmp_path, "records_dir": None})
    assert facts["records_dir"] is None
    assert facts["data_dir"]["path"] == str(tmp_path)
    assert facts["data_dir"]["fs_type"] and facts["data_dir"]["source"]
    assert os.path.realpath(tmp_path).startswith(facts["data_dir"]["mount_point"])


def test_cell_files_raw_and_tfrecord(synth_root: Path, records_png: Path) -> None:
    from converters.chestxray import read_chestxray14
    from converters.manifest import load_manifest

    raw = page_cache.cell_files(data_format="raw", splits=("train",), data_dir=synth_root)
    expected = [str(r.path) for r in read_chestxray14(synth_root).split("train")]
    assert raw == expected and all(Path(path).is_file() for path in raw)
    both = page_cache.cell_files(data_format="raw", splits=("train", "val"), data_dir=synth_root)
    assert len(both) > len(raw)

    shards = page_cache.cell_files(
        data_format="tfrecord", splits=("train",), records_dir=records_png
    )
    assert shards == [str(p) for p in load_manifest(records_png).shard_paths("train")]
    with pytest.raises(ValueError, match="records_dir"):
        page_cache.cell_files(data_format="tfrecord", splits=("train",))


def test_larger_than_memory_is_cold_by_nature(data_folder: Path, monkeypatch) -> None:
    paths = _write_files(data_folder, 1)
    monkeypatch.setattr(page_cache, "memory_limit_bytes", lambda: FILE_BYTES // 2)
    page_cache.evict(paths)
    record = page_cache.prepare(paths, "warm")
    assert record["larger_than_memory"] is True and record["bytes_read"] == 0
    assert "cold by nature" in record["note"] and record["action"].startswith("none")
    assert record["after"]["fraction"] < 0.02  # not read in vain


def test_page_cache_is_a_sweep_axis() -> None:
    """Synthetic cells ignore it (planned once); cold cells get their own id and slug;
    warm, the default, keeps the ids cells had before the setting existed."""
    from bench.sweep.load import parse_sweep
    from bench.sweep.plan import plan

    text = (
        "name: t\nlauncher: {kind: local}\nbase: {data_dir: /data}\n"
        "axes: {mode: [synthetic, train], page_cache: [warm, cold]}\n"
    )
    cells = plan(parse_sweep(text, environ={}))
    modes = sorted((c.settings["mode"], c.settings["page_cache"]) for c in cells)
    assert modes == [("synthetic", "warm"), ("train", "cold"), ("train", "warm")]
    by_state = {c.settings["page_cache"]: c for c in cells if c.settings["mode"] == "train"}
    assert "-train-cold-" in by_state["cold"].slug and "cold" not in by_state["warm"].slug
    assert (
        by_state["cold"].config.page_cache == "cold" and by_state["cold"].id != by_state["warm"].id
    )
    before = text.replace(", page_cache: [warm, cold]", "")
    assert {c.id for c in plan(parse_sweep(before, environ={}))} == {
        c.id for c in cells if c.settings["page_cache"] == "warm"
    }
    bad = "name: t\nlauncher: {kind: local}\naxes: {page_cache: [tepid]}\n"
    with pytest.raises(Exception, match="tepid"):
        plan(parse_sweep(bad, environ={}))
