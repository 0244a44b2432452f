"""Where a cell's bytes come from: page-cache residency, eviction, warming, the mount.

A cell's throughput on raw files against TFRecords depends on whether the bytes come
from memory or from the storage device, so the cache state is set and measured, not
assumed:

- `residency(paths)`: how many of the files' bytes sit in the page cache, measured with
  `mincore(2)` on a read-only mapping of each file (ctypes, no root, no page faults: a
  mapping that is never touched reads nothing). Since Linux 5.0 the kernel shows the
  cache state only of files the caller owns or may write (for any other file mincore
  says "resident" for every page); such files are counted as unmeasured, never as warm.
- `evict(paths)`: per file, `fdatasync` (a dirty page cannot be dropped) then
  `posix_fadvise(POSIX_FADV_DONTNEED)`; works for any file the user can read.
  `drop_all_caches()` writes `/proc/sys/vm/drop_caches` (root only, and only when asked).
- `warm(paths)`: read every file once, so a "warm" cell is warm in fact.
- `prepare(paths, state)`: one of the two, with residency before and after, as the
  JSON-able record a result stores. A data set larger than the memory this process may
  use cannot be held warm: it is cold by nature, and the record says so.
- `mount_of(path)`: the file system type and mount source of a folder, from
  `/proc/self/mountinfo` (local NVMe beside Lustre, NFS or GPFS).
- `cell_files(...)`: the files a cell reads (the raw images of its splits, or the shards).

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

CacheState = Literal["warm", "cold"]
CACHE_STATES = ("warm", "cold")
PAGE_SIZE = mmap.PAGESIZE
# mincore reports one byte per page: map at most this much at once to bound that vector.
MAP_CHUNK_BYTES = 1 << 30
READ_CHUNK_BYTES = 8 << 20
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
# Below this resident fraction a cold cell counts as cold, above WARM_ENOUGH a warm one warm.
COLD_ENOUGH = 0.05
WARM_ENOUGH = 0.95

_PROT_READ = 0x1
_MAP_SHARED = 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


@dataclass(frozen=True, kw_only=True)
class Residency:
    """How much of a set of files is in the page cache (bytes rounded to whole pages)."""

    files: int
    bytes: int  # the files' sizes, summed
    measured_bytes: int  # the sizes of the files whose cache state the kernel shows us
    resident_bytes: int  # of those: resident pages x page size, capped at each file's size
    unmeasured_files: int = 0  # files neither owned nor writable: state hidden (Linux >= 5.0)
    unreadable: int = 0  # files that could not be opened or mapped (left out of every sum)

    @property
    def fraction(self) -> float | None:
        """Resident share of the measured bytes; None when nothing could be measured."""
        return self.resident_bytes / self.measured_bytes if self.measured_bytes else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": self.fraction}


def cache_state_visible(path: str | Path, uid: int | None = None) -> bool:
    """Whether mincore tells this user the truth about `path` (owner, writer or root)."""
    uid = os.geteuid() if uid is None else uid
    return uid == 0 or os.stat(path).st_uid == uid or os.access(path, os.W_OK, effective_ids=True)


def file_residency(path: str | Path) -> tuple[int, int | None]:
    """(size, resident bytes or None where hidden) of one file; OSError if unreadable."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if not cache_state_visible(path):
            return size, None
        resident_pages = 0
        for offset in range(0, size, MAP_CHUNK_BYTES):
            length = min(MAP_CHUNK_BYTES, size - offset)
            resident_pages += _resident_pages(fd, offset, length)
        return size, min(size, resident_pages * PAGE_SIZE)
    finally:
        os.close(fd)


def _resident_pages(fd: int, offset: int, length: int) -> int:
    address = _libc.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, offset)
    if address in (None, _MAP_FAILED):
        code = ctypes.get_errno()
        raise OSError(code, f"mmap: {os.strerror(code)}")
    try:
        pages = (length + PAGE_SIZE - 1) // PAGE_SIZE
        vector = (ctypes.c_ubyte * pages)()
        if _libc.mincore(ctypes.c_void_p(address), length, vector) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"mincore: {os.strerror(code)}")
        return sum(byte & 1 for byte in bytes(vector))
    finally:
        _libc.munmap(ctypes.c_void_p(address), length)


def residency(paths: Iterable[str | Path]) -> Residency:
    """The page-cache residency of every file in `paths` together."""
    files = total = measured = resident = unmeasured = unreadable = 0
    for path in paths:
        try:
            size, in_cache = file_residency(path)
        except OSError:
            unreadable += 1
            continue
        files += 1
        total += size
        if in_cache is None:
            unmeasured += 1
        else:
            measured += size
            resident += in_cache
    return Residency(
        files=files,
        bytes=total,
        measured_bytes=measured,
        resident_bytes=resident,
        unmeasured_files=unmeasured,
        unreadable=unreadable,
    )


def evict_file(path: str | Path) -> None:
    """Drop one file's pages from the page cache (dirty pages are written out first)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            os.fdatasync(fd)
        except OSError as error:  # e.g. a file system without fsync on read-only handles
            if error.errno not in (errno.EBADF, errno.EINVAL, errno.EROFS):
                raise
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict(paths: Iterable[str | Path]) -> list[str]:
    """Evict every file; returns 'path: reason' for each file that could not be evicted."""
    problems = []
    for path in paths:
        try:
            evict_file(path)
        except OSError as error:
            problems.append(f"{path}: {error.strerror or error}")
    return problems


def drop_all_caches() -> None:
    """Flush and drop the whole page cache (root only); PermissionError/OSError otherwise."""
    if os.geteuid() != 0:
        raise PermissionError(f"dropping the whole page cache ({DROP_CACHES}) needs root")
    os.sync()
    DROP_CACHES.write_text("1\n", encoding="ascii")


def warm(paths: Iterable[str | Path]) -> tuple[int, list[str]]:
    """Read every file once, in order: (bytes read, 'path: reason' for unreadable files)."""
    read = 0
    problems = []
    buffer = bytearray(READ_CHUNK_BYTES)
    view = memoryview(buffer)
    for path in paths:
        try:
            with open(path, "rb", buffering=0) as handle:
                while count := handle.readinto(view):
                    read += count
        except OSError as error:
            problems.append(f"{path}: {error.strerror or error}")
    return read, problems


def memory_limit_bytes() -> int | None:
    """What this process's page cache can hold at most: RAM, or a smaller cgroup limit."""
    limits = []
    with contextlib.suppress(ValueError, OSError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for candidate in (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ):
        try:
            text = candidate.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # v1 writes a huge number for "none"
            limits.append(int(text))
    return min(limits) if limits else None


def prepare(
    paths: Sequence[str | Path], state: CacheState, *, drop_all: bool = False
) -> dict[str, Any]:
    """Make `paths` warm or cold; the record (action, residency before and after) to store.

    `drop_all` (cold only) drops the whole page cache first, which needs root; without
    root the record says why it was not done and per-file eviction still runs.
    """
    if state not in CACHE_STATES:
        raise ValueError(f"page cache state must be warm or cold, got {state!r}")
    started = time.perf_counter()
    before = residency(paths)
    limit = memory_limit_bytes()
    larger = limit is not None and before.bytes > limit
    problems: list[str] = []
    notes: list[str] = []
    if state == "warm" and larger:
        # Reading it all would only push its own first files out again.
        action = "none (larger than memory)"
        bytes_read = 0
        notes.append(
            f"the data ({before.bytes} bytes) is larger than memory ({limit} bytes): "
            "it cannot be held warm, it is cold by nature"
        )
    elif state == "warm":
        action = "read every file once"
        bytes_read, problems = warm(paths)
    else:
        action = "posix_fadvise(DONTNEED) per file"
        bytes_read = 0
        if drop_all:
            try:
                drop_all_caches()
                action = "drop_caches (whole page cache), then " + action
            except OSError as error:
                notes.append(f"whole-cache drop not done: {error}")
        problems = evict(paths)
        if larger:
            notes.append(
                f"the data ({before.bytes} bytes) is larger than memory ({limit} bytes): "
                "cold by nature"
            )
    after = residency(paths)
    fraction = after.fraction
    if after.unmeasured_files:
        notes.append(
            f"the cache state of {after.unmeasured_files} file(s) is hidden from this user "
            "(the kernel shows it only for files one owns or may write): not measured"
        )
    if fraction is not None:
        if state == "cold" and fraction > COLD_ENOUGH:
            notes.append(
                f"{100 * fraction:.1f}% still resident after eviction (file system keeps "
                "its pages, e.g. tmpfs, or another process holds them)"
            )
        if state == "warm" and fraction < WARM_ENOUGH and not larger:
            notes.append(f"only {100 * fraction:.1f}% resident after reading (memory pressure)")
    return {
        "state": state,
        "action": action,
        "files": len(paths),
        "bytes_read": bytes_read,
        "before": before.to_dict(),
        "after": after.to_dict(),
        "memory_limit_bytes": limit,
        "larger_than_memory": larger,
        "seconds": time.perf_counter() - started,
        "problems": problems[:10],
        "problem_count": len(problems),
        "note": "; ".join(notes) or None,
    }


@dataclass(frozen=True, kw_only=True)
class Mount:
    """One line of /proc/self/mountinfo: where a path lives."""

    mount_point: str
    fs_type: str
    source: str
    options: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134."""
    out, index = [], 0
    while index < len(field):
        chunk = field[index : index + 4]
        if chunk[:1] == "\\" and len(chunk) == 4 and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount in a mountinfo text (see proc(5)): fields, '-', fs type, source, options."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 5 or len(fields) < dash + 3:
            continue
        mounts.append(
            Mount(
                mount_point=_unescape(fields[4]),
                fs_type=fields[dash + 1],
                source=_unescape(fields[dash + 2]),
                options=fields[5],
            )
        )
    return mounts


def mount_of(path: str | Path, *, mountinfo: str | None = None) -> Mount | None:
    """The mount holding `path` (the longest mount point above it; the last such line wins)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
        except OSError:
            return None
    target = os.path.realpath(path)
    best: Mount | None = None
    for mount in parse_mountinfo(mountinfo):
        point = mount.mount_point.rstrip("/") or "/"
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


def storage_facts(folders: dict[str, str | Path | None]) -> dict[str, Any]:
    """{name: {path, mount_point, fs_type, source, options} | None} for result environments."""
    facts: dict[str, Any] = {}
    for name, folder in folders.items():
        mount = mount_of(folder) if folder else None
        facts[name] = None if mount is None else {"path": str(folder), **mount.to_dict()}
    return facts


def cell_files(
    *,
    data_format: str,
    splits: Sequence[str],
    data_dir: str | Path | None = None,
    records_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[str]:
    """The files a cell reads: the raw images of its splits, or its splits' shards."""
    if data_format == "raw":
        if data_dir is None:
            raise ValueError("a raw cell needs data_dir to list its files")
        from converters.chestxray import read_chestxray14

        dataset = read_chestxray14(Path(data_dir))
        return [
            str(record.path)
            for split in splits
            for record in dataset.split(split, val_fraction=val_fraction, seed=seed)
            if record.path is not None
        ]
    if data_format == "tfrecord":
        if records_dir is None:
            raise ValueError("a tfrecord cell needs records_dir to list its files")
        from converters.manifest import load_manifest

        manifest = load_manifest(Path(records_dir))
        return [str(path) for split in splits for path in manifest.shard_paths(split)]
    raise ValueError(f"data_format must be raw or tfrecord, got {data_format!r}")
