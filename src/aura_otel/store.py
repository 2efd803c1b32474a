"""Job files on disk: safe ids, atomic writes, cross-process merge, listing.

Layout, one folder per job::

    <jobs_dir>/<job_id>/telemetry.json       the v1 file legacy consumers read
    <jobs_dir>/<job_id>/.aura-units.jsonl    the job's fold units, append-only, keyed by span id

The journal is also the lock: every writer holds an ``flock`` on it while it reads what others
appended, appends its own new units and replaces ``telemetry.json``. Units never change once a
span has ended, so the journal only grows by the spans of the job, and merging is a union by
span id: processes sharing the folder neither duplicate nor lose records.

Every id is validated before any path is built, and every file is opened relative to a
descriptor of the jobs folder, then of the job's folder, without following links
(``O_NOFOLLOW``, ``O_DIRECTORY``) and after checking it is a regular file: a link planted in
the jobs folder cannot lead a writer outside it, and a FIFO cannot block a reader.

Faults leave the files consistent: a journal append is complete or absent (a short write or a
full disk truncates it back), and ``telemetry.json`` is only ever replaced whole.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypedDict

import orjson

from .errors import (
    ConfigurationError,
    CorruptTelemetryError,
    InvalidJobIdError,
    TelemetryNotFoundError,
    TelemetryTooLargeError,
    UnsafeFileError,
)
from .schema import Collection, is_safe_job_id, load_collection, validate_job_id

TELEMETRY_FILE = "telemetry.json"
JOURNAL_FILE = ".aura-units.jsonl"

Units = dict[str, dict[str, Any]]

#: The journal line format this version writes (see :class:`JournalLine`).
JOURNAL_VERSION: Literal[1] = 1


class UnitFields(TypedDict, total=False):
    """One span's fold unit, as :func:`aura_otel.fold.fold_span` makes it (short keys: a job's
    journal holds one per span).

    Every unit has ``k`` (``root``, ``stage``, ``child`` or ``link``), ``s`` and ``e`` (start
    and end, nanoseconds since the epoch) and, below the job span, ``p`` (the parent span id).
    """

    k: str
    s: int
    e: int
    p: str
    t: str  # root: the trace id (for links to a trace backend)
    b: float  # root: the job's budget (aura.budget.amount)
    fw: int  # root: 1 when the job's spans were also forwarded to a trace backend
    n: str  # child or link: the span's name (for the drill-down)
    rm: str  # stage: the response model, when the span named one
    qm: str  # stage: the request model, beside a response model
    x: dict[str, str]  # failed stage: the exception's type, message and stack (masked)
    err: str  # root: the job's error code when it failed
    msg: str  # root: the failure message (masked)
    corr: str  # correlation id
    proj: str  # project id
    r: dict[str, Any]  # stage: its v1 record before merging children and pricing
    usage: dict[str, Any]  # stage or child: priced quantities (characters, images, ...)
    provider: str  # child: GenAI provider
    model: str  # child: model
    tin: int  # child: input tokens
    tout: int  # child: output tokens
    cost: float  # child: explicit cost


class JournalLine(TypedDict):
    """One line of ``.aura-units.jsonl``: ``{"v": 1, "units": [[span_id, unit], ...]}``.

    ``v`` lets a later version change the format and still read what this one wrote. Lines
    without it (a bare ``[[span_id, unit], ...]`` array) are the format before versioning and
    are read the same way. Units are an array of pairs rather than an object keyed by span id:
    orjson caches the keys of the objects it parses, and a cache of ever-new span ids keeps
    memory scattered across the allocator in a long-running process.
    """

    v: Literal[1]
    units: list[tuple[str, UnitFields]]


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
#: A job's own folder and files are never reached through a link.
_NOFOLLOW = os.O_NOFOLLOW | _CLOEXEC
#: O_NONBLOCK: opening a FIFO returns at once (and is then refused by the regular-file check)
#: instead of waiting for a writer that never comes. It changes nothing for regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW


def _is_link_refusal(exc: OSError) -> bool:
    # O_NOFOLLOW on a link fails with ELOOP; O_DIRECTORY on a non-folder with ENOTDIR.
    return exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise: ``os.write`` may write less than asked (a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # no progress and no error: treat as the disk being full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _open_regular(name: str, flags: int, dir_fd: int, mode: int = 0o644) -> int:
    """Open ``name`` in ``dir_fd`` without following a link; refuse anything not a regular file."""
    try:
        fd = os.open(name, flags | _NOFOLLOW, mode, dir_fd=dir_fd)
    except OSError as exc:
        if _is_link_refusal(exc):
            raise UnsafeFileError(exc.errno, f"{name} is a symbolic link; not followed") from None
        raise
    try:
        mode_bits = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode_bits):
        os.close(fd)
        raise UnsafeFileError(errno.EINVAL, f"{name} is not a regular file; not opened")
    return fd


def atomic_write_at(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` in the folder ``dir_fd`` so a reader sees the old file or the new one.

    The temporary file lives in the same folder so the final rename is atomic on one file
    system; its name is unique per process and thread, so concurrent writers never share one.
    It is created exclusively and without following links, and the rename replaces a planted
    link itself, never its target. No fsync: a killed process loses nothing the kernel already
    holds, and an fsync per write would cost more than the job's spans.
    """
    tmp = f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
    except FileExistsError:  # a leftover of a killed writer that had our pid, or a plant
        os.unlink(tmp, dir_fd=dir_fd)
        fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """:func:`atomic_write_at` for a path (its folder is followed as given)."""
    folder, name = os.path.split(os.fspath(path))
    dir_fd = os.open(folder or ".", _DIR_FLAGS)
    try:
        atomic_write_at(dir_fd, name, data)
    finally:
        os.close(dir_fd)


#: The most one read asks for: Linux returns at most ~2 GiB from one ``read``/``pread``, and
#: a short read taken for the end of a journal would cut it there (its torn-tail repair).
READ_CHUNK = 1 << 26


def pread_all(fd: int, size: int, offset: int = 0) -> bytes:
    """``size`` bytes from ``offset``, in as many reads as that takes; fewer only at the end
    of the file."""
    chunks = []
    while size > 0:
        chunk = os.pread(fd, min(size, READ_CHUNK), offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read_regular(dir_fd: int, name: str, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``name`` in ``dir_fd``, never blocking on a FIFO.

    Raises FileNotFoundError, UnsafeFileError (a link, FIFO, device, folder...) or
    TelemetryTooLargeError (``max_bytes`` exceeded, checked before reading).
    """
    fd = _open_regular(name, _READ_FLAGS, dir_fd)
    try:
        size = os.fstat(fd).st_size
        if max_bytes is not None and size > max_bytes:
            raise TelemetryTooLargeError(
                f"{name} is {size} bytes; the limit is {max_bytes}", size=size, limit=max_bytes
            )
        chunks = []
        left = size if max_bytes is None else max_bytes + 1
        while left > 0:  # the file may grow or shrink while it is read
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if max_bytes is not None and len(data) > max_bytes:
            raise TelemetryTooLargeError(
                f"{name} grew past the limit of {max_bytes} bytes", size=len(data), limit=max_bytes
            )
        return data
    finally:
        os.close(fd)


def read_named_file(name: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """A file a user named (on the command line, in a variable), read as the server reads a
    job's: a FIFO or device is refused at once (never waited on, never read without end), a
    file past ``max_bytes`` is refused unread. A link given by name is followed: naming it is
    the user's choice."""
    path = Path(name).resolve()
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_regular(folder, path.name, max_bytes)
    finally:
        os.close(folder)


# Listing checks every folder name on every call; names rarely change, so remember verdicts.
_safe_folder_name = functools.lru_cache(maxsize=1 << 17)(is_safe_job_id)


def _line_pairs(line: bytes) -> list[Any] | None:
    """The ``[span_id, unit]`` pairs of one journal line, of any version this code reads;
    None for a line it cannot read (damaged, or written by a newer format)."""
    try:
        chunk = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(chunk, dict):
        pairs = chunk.get("units")
        return pairs if chunk.get("v") == JOURNAL_VERSION and isinstance(pairs, list) else None
    return chunk if isinstance(chunk, list) else None  # before versioning: the bare pairs


def journal_line(units: Units) -> bytes:
    """``units`` as one journal line of the current format (:class:`JournalLine`)."""
    return orjson.dumps({"v": JOURNAL_VERSION, "units": list(units.items())}) + b"\n"


def _parse_units(data: bytes) -> tuple[Units, int]:
    """Units from complete journal lines, and how many lines were damaged (skipped)."""
    units: Units = {}
    damaged = 0
    for line in data.splitlines():
        chunk = _line_pairs(line)
        if chunk is None:
            damaged += 1
            continue
        for pair in chunk:
            if (
                isinstance(pair, list)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], dict)
            ):
                units[pair[0]] = pair[1]
    return units, damaged


def parse_units(data: bytes) -> Units:
    """Units from complete journal lines (:class:`JournalLine`, or the unversioned lines
    written before it); a damaged line is skipped, not fatal."""
    return _parse_units(data)[0]


class Journal:
    """A job's unit journal, opened and exclusively locked (see the module docstring).

    ``damaged`` turns true when a read finds lines it cannot parse, a journal shorter than
    what was already read from it, or no journal beside an existing ``telemetry.json``: the
    journal then no longer holds everything the file shows, and a writer must not let the
    file shrink to what the journal still holds.
    """

    def __init__(self, dir_fd: int, fd: int, *, new_folder: bool = False) -> None:
        self.dir_fd = dir_fd
        self._fd = fd
        self.damaged = False
        # A folder this writer has just created holds no telemetry.json to protect.
        self._new_folder = new_folder
        # The journal's size as last read or written under the lock: the next append needs
        # no fstat of its own (nobody else writes while the lock is held).
        self._size: int | None = None

    def read_from(self, offset: int) -> tuple[Units, int]:
        """Units appended after ``offset`` (by anyone), and the offset to read from next time.

        A torn last line (a writer killed mid-append) is cut off, so the next append starts on
        a line of its own; a damaged line is skipped rather than failing the whole job.
        """
        size = os.fstat(self._fd).st_size
        if size < offset:
            self.damaged = True  # truncated or replaced under us: re-read it all
            offset = 0
        if size == offset:
            if size == 0 and not self._new_folder and self._telemetry_exists():
                self.damaged = True
            self._size = size
            return {}, size
        data = pread_all(self._fd, size - offset, offset)
        end = data.rfind(b"\n") + 1
        if end < len(data) and offset + len(data) == size:  # the last line is torn: cut it
            os.ftruncate(self._fd, offset + end)
            size = offset + end
        elif offset + len(data) < size:  # cut short under us: read the rest next time
            size = offset + end
        units, damaged = _parse_units(data[:end])
        if damaged:
            self.damaged = True
        self._size = size
        return units, size

    def _telemetry_exists(self) -> bool:
        try:
            st = os.stat(TELEMETRY_FILE, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size > 0

    def append(self, units: Units) -> int:
        """Append ``units`` as one line, whole or not at all; returns the journal's new size.

        A short write or an error (``ENOSPC``, ``EIO``) truncates the journal back to its size
        before the append and raises: a half line would cost the units of the next append too.
        """
        return self.append_lines(journal_line(units))  # encoding fails before any write

    def append_lines(self, line: bytes) -> int:
        """:meth:`append` for units already encoded as whole journal lines (a writer that
        serialised them once, for its own log and the journal alike)."""
        before = self._size if self._size is not None else os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, line)
        except BaseException:
            self._size = None
            try:
                os.ftruncate(self._fd, before)
            except OSError:
                pass  # the torn tail is cut by the next read_from
            raise
        self._size = before + len(line)
        return self._size

    def read_telemetry(self, max_bytes: int | None = None) -> bytes | None:
        """The job's current ``telemetry.json`` (None when there is none or it is not a file)."""
        try:
            return read_regular(self.dir_fd, TELEMETRY_FILE, max_bytes)
        except (OSError, CorruptTelemetryError):
            return None

    def write_telemetry(self, data: bytes) -> None:
        atomic_write_at(self.dir_fd, TELEMETRY_FILE, data)

    def sync(self) -> None:
        """Put what was appended on stable storage: a receiver acknowledges spans only after."""
        os.fdatasync(self._fd)


def check_jobs_folder(jobs_dir: str | os.PathLike[str]) -> None:
    """Refuse a jobs folder that names a file (or anything else but a folder) at start-up:
    otherwise every write fails later, one logged error per job, and a reader shows nothing.
    A folder that does not exist yet is fine: the first write makes it."""
    path = Path(jobs_dir).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigurationError(f"the jobs folder {path} is not a folder")


class JobStore:
    """The jobs folder. Cheap to construct; creates folders only when it writes.

    ``max_file_bytes`` caps the ``telemetry.json`` a reader will load (None: no cap).
    """

    def __init__(
        self, jobs_dir: str | os.PathLike[str], *, max_file_bytes: int | None = None
    ) -> None:
        self.root = Path(jobs_dir).expanduser().absolute()
        self._root = str(self.root)
        self.max_file_bytes = max_file_bytes

    def __repr__(self) -> str:
        return f"JobStore({str(self.root)!r})"

    def job_dir(self, job_id: str) -> Path:
        """The job's folder; raises InvalidJobIdError before any path is touched."""
        validate_job_id(job_id)
        path = self.root / job_id
        if path.parent != self.root:  # defence in depth: the id validator already forbids this
            raise InvalidJobIdError(f"job id {job_id!r} escapes the jobs folder")
        return path

    def telemetry_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / TELEMETRY_FILE

    def exists(self, job_id: str) -> bool:
        try:
            dir_fd = self._open_job_dir(job_id, create=False)
        except (OSError, InvalidJobIdError):
            return False
        try:
            st = os.stat(TELEMETRY_FILE, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return False
        finally:
            os.close(dir_fd)
        return stat.S_ISREG(st.st_mode)

    # -- folders ---------------------------------------------------------------------------------
    def _open_root(self, *, create: bool) -> int:
        try:
            return os.open(self._root, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self._root, _DIR_FLAGS)

    @contextmanager
    def root_fd(self) -> Iterator[int]:
        """The jobs folder, opened (and made) once for a round of writes to several jobs."""
        fd = self._open_root(create=True)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_job_dir(self, job_id: str, *, create: bool) -> int:
        """A descriptor of the job's own folder, never reached through a link.

        The jobs folder itself is opened as configured (it may be a link the operator chose);
        below it, nothing is followed. Raises FileNotFoundError when ``create`` is false and
        the folder does not exist, UnsafeFileError when the job's folder is a link or a file.
        """
        # Plain strings, not Path objects: pathlib interns every part, and a long-running
        # exporter sees an unbounded number of job ids.
        validate_job_id(job_id)
        root_fd = self._open_root(create=create)
        try:
            return self._job_dir_at(root_fd, job_id, create=create)[0]
        finally:
            os.close(root_fd)

    def _job_dir_at(
        self, root_fd: int, job_id: str, *, create: bool, fresh: bool = False
    ) -> tuple[int, bool]:
        """The job's folder in ``root_fd``, and whether this call created it. ``fresh`` (a
        job this writer has not written yet) tries ``mkdir`` first: one system call fewer for
        a new job, and the same outcome for an existing one."""
        made = False
        try:
            if fresh and create:
                try:
                    os.mkdir(job_id, 0o755, dir_fd=root_fd)
                    made = True
                except FileExistsError:  # another writer made it, or a link was planted
                    pass
                return os.open(job_id, _DIR_FLAGS | _NOFOLLOW, dir_fd=root_fd), made
            try:
                return os.open(job_id, _DIR_FLAGS | _NOFOLLOW, dir_fd=root_fd), made
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(job_id, 0o755, dir_fd=root_fd)
                    made = True
                except FileExistsError:  # another writer made it, or a link was planted
                    pass
                return os.open(job_id, _DIR_FLAGS | _NOFOLLOW, dir_fd=root_fd), made
        except OSError as exc:
            if _is_link_refusal(exc):
                raise UnsafeFileError(
                    exc.errno,
                    f"the folder of job {job_id!r} is a symbolic link or not a folder; "
                    "not followed",
                ) from None
            raise

    # -- reading ---------------------------------------------------------------------------------
    def read_bytes(self, job_id: str) -> bytes:
        """The job's ``telemetry.json``, read without following links or blocking.

        A link (folder or file) reads as absent, since it is not a job file; a FIFO, device or
        folder as corrupt; a file over ``max_file_bytes`` raises TelemetryTooLargeError
        before any of it is read.
        """
        missing = f"no telemetry for job {job_id!r} in {self.root}"
        try:
            dir_fd = self._open_job_dir(job_id, create=False)
        except (FileNotFoundError, UnsafeFileError):
            raise TelemetryNotFoundError(missing) from None
        try:
            return read_regular(dir_fd, TELEMETRY_FILE, self.max_file_bytes)
        except FileNotFoundError:
            raise TelemetryNotFoundError(missing) from None
        except UnsafeFileError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise TelemetryNotFoundError(missing) from None
            raise CorruptTelemetryError(
                f"the telemetry of job {job_id!r} is not a regular file"
            ) from None
        finally:
            os.close(dir_fd)

    def read(self, job_id: str) -> Collection:
        """The job's validated collection (either enum spelling)."""
        return load_collection(self.read_bytes(job_id), job_id)

    def read_journal(self, job_id: str) -> Units:
        """All units recorded for a job (empty when none or unreadable).

        The shared lock is taken only if free: a reader never waits on a writer, and a line a
        writer is appending right now is cut off as a torn tail. With ``max_file_bytes`` set,
        a journal over four times that (it holds more than the file) reads as empty.
        """
        try:
            dir_fd = self._open_job_dir(job_id, create=False)
        except (FileNotFoundError, UnsafeFileError):
            return {}
        try:
            fd = _open_regular(JOURNAL_FILE, _READ_FLAGS, dir_fd)
        except OSError:  # absent, a link, a FIFO...
            return {}
        finally:
            os.close(dir_fd)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            size = os.fstat(fd).st_size
            if self.max_file_bytes is not None and size > 4 * self.max_file_bytes:
                return {}
            data = pread_all(fd, size)
            return parse_units(data[: data.rfind(b"\n") + 1])
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def journal(
        self, job_id: str, *, root_fd: int | None = None, fresh: bool = False
    ) -> Iterator[Journal]:
        """The job's journal, exclusively locked (an flock: it excludes other processes too).

        ``root_fd`` (from :meth:`root_fd`) spares reopening the jobs folder for every job of a
        round; ``fresh`` says the caller has not written this job before (see ``_job_dir_at``).
        """
        validate_job_id(job_id)
        own_root = root_fd is None
        root = self._open_root(create=True) if root_fd is None else root_fd
        try:
            dir_fd, made = self._job_dir_at(root, job_id, create=True, fresh=fresh)
        finally:
            if own_root:
                os.close(root)
        try:
            fd = _open_regular(
                JOURNAL_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, dir_fd
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield Journal(dir_fd, fd, new_folder=made)
            finally:
                os.close(fd)  # closing releases the flock
        finally:
            os.close(dir_fd)

    # -- listing ---------------------------------------------------------------------------------
    def job_entries(self) -> list[tuple[str, int, int]]:
        """(job id, mtime_ns, size) of every job's telemetry file, newest file first.

        One scandir plus one stat per job: a listing can tell from (mtime_ns, size) which files
        changed since it last read them, without opening any.
        """
        found: list[tuple[int, str, int]] = []
        try:
            entries = os.scandir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False) or not _safe_folder_name(entry.name):
                    continue
                try:
                    st = os.lstat(f"{entry.path}/{TELEMETRY_FILE}")  # a link is not a job file
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append((st.st_mtime_ns, entry.name, st.st_size))
        found.sort(key=lambda item: (-item[0], item[1]))
        return [(name, mtime_ns, size) for mtime_ns, name, size in found]

    def job_ids(self) -> list[str]:
        """Ids of the jobs that have a telemetry file, newest file first."""
        return [name for name, _, _ in self.job_entries()]
