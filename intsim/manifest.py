"""Output directories that cmamba-hls owns, proven by a manifest; nobody else's files are touched.

Every directory a command writes (a `codegen` project, an `eval` report, a `compare` report,
the `demo` directory) holds a manifest: a JSON file naming the format, its version and the
list of files the command wrote (relative POSIX paths), plus the command's own metadata:

    {"format": "cmamba-hls eval report", "version": 1, "files": ["error_hist.png", ...], ...}

A command writes into DIR only when DIR does not exist, is empty, or holds a manifest of the
same format and version. Anything else (a user's folder, a folder that merely contains a file
called `project.json`) is refused with a one-line error before anything is written.

Writing (`staged` + `publish`): every file is built in a temporary sibling folder first.
- DIR absent: the folder is renamed into place (one atomic rename);
- DIR present: each file is moved in by rename, the files the old manifest lists but this run
  did not write are deleted, and every other file in DIR (notes, a Vitis project folder, build
  outputs) is left alone. A file this run would write that the old manifest does not list is
  someone else's: the run stops before moving anything. The manifest is rewritten first with
  the union of old and new files and last with the new list, so an interrupted run still
  names every file it may have moved in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from intsim.errors import CmambaError


@dataclass(frozen=True)
class DirKind:
    """One kind of owned directory."""

    manifest: str  # manifest file name in the directory
    format: str  # the manifest's "format" value
    version: int  # the manifest's "version" value
    what: str  # for messages: "the report", "the project"
    command: str  # for messages: the command that writes it


class OutputDirError(CmambaError):
    """An output directory cmamba-hls does not own, or cannot write."""


def _valid_rel(path) -> bool:
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        return False
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and "." not in p.parts and str(p) == path


def read_manifest(out_dir: Path, kind: DirKind) -> dict | None:
    """The manifest of `out_dir` when it proves the directory is `kind`; None otherwise."""
    try:
        raw = json.loads((Path(out_dir) / kind.manifest).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != kind.format or raw.get("version") != kind.version:
        return None
    files = raw.get("files")
    if not isinstance(files, list) or not all(_valid_rel(f) and f != kind.manifest for f in files):
        return None
    return raw


def _fail(out_dir: Path, kind: DirKind, why):
    """OutputDirError naming the directory; `why` is a reason or the OSError behind it."""
    if isinstance(why, OSError):
        where = Path(why.filename) if why.filename else None
        blocking = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            why = f"'{blocking}' is a file, not a directory"
        else:
            why = (why.strerror or str(why)) + (f" ('{where}')" if where is not None and where != out_dir else "")
    raise OutputDirError(f"cannot write {kind.what} to '{out_dir}': {why}") from None


def owned_files(out_dir: str | Path, kind: DirKind) -> list[str] | None:
    """Check that `kind` may be written to `out_dir`: None when it is absent, the files the
    manifest lists when it is ours ([] when empty). OutputDirError otherwise."""
    out_dir = Path(out_dir)
    try:
        if not out_dir.exists():
            return None
        if not out_dir.is_dir():
            _fail(out_dir, kind, "it exists and is not a directory")
        if not any(out_dir.iterdir()):
            return []
    except OSError as exc:
        _fail(out_dir, kind, exc)
    manifest = read_manifest(out_dir, kind)
    if manifest is None:
        what = (
            f"its {kind.manifest} is not a {kind.format} manifest"
            if (out_dir / kind.manifest).exists()
            else f"it has no {kind.manifest}"
        )
        _fail(
            out_dir,
            kind,
            f"the directory is not empty and was not written by cmamba-hls {kind.command} "
            f"({what}); refusing to touch it: choose a new or empty directory",
        )
    return list(manifest["files"])


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _default_dir_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def claim(out_dir: str | Path, kind: DirKind, meta: dict | None = None) -> Path:
    """Make `out_dir` a `kind` directory (created when absent, manifest written when empty)
    before other writers fill sub-directories of it. Keeps an existing manifest's files."""
    out_dir = Path(out_dir)
    if owned_files(out_dir, kind) is None or not (out_dir / kind.manifest).exists():
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_json(out_dir / kind.manifest, _manifest(kind, [], meta))
        except OSError as exc:
            _fail(out_dir, kind, exc)
    return out_dir


@contextmanager
def staged(out_dir: str | Path, kind: DirKind) -> Iterator[Path]:
    """Check `out_dir` (OutputDirError early), then yield an empty temporary sibling folder to
    write into; it is removed on exit. OSErrors inside become OutputDirError."""
    out_dir = Path(out_dir)
    owned_files(out_dir, kind)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(out_dir, kind, exc)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    except OSError as exc:
        _fail(out_dir, kind, f"cannot create files in '{out_dir.parent}' ({exc.strerror})")
    try:
        yield tmp
    except OSError as exc:
        _fail(out_dir, kind, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest(kind: DirKind, files, meta: dict | None) -> dict:
    return dict(meta or {}) | {"format": kind.format, "version": kind.version, "files": sorted(files)}


def publish(tmp: Path, out_dir: str | Path, kind: DirKind, meta: dict | None = None) -> list[Path]:
    """Move every file under `tmp` into `out_dir` (see the module docstring) and write the
    manifest with `meta`. Returns the written paths (manifest last)."""
    out_dir = Path(out_dir)
    new = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file() or p.is_symlink())
    if kind.manifest in new:
        raise CmambaError(f"{kind.command}: wrote its own {kind.manifest}")  # a bug, not a user error
    old = owned_files(out_dir, kind)
    try:
        if old is None:
            _write_json(tmp / kind.manifest, _manifest(kind, new, meta))
            os.chmod(tmp, _default_dir_mode())
            os.rename(tmp, out_dir)
        else:
            taken = [f for f in new if f not in old and os.path.lexists(out_dir / f)]
            if taken:
                _fail(
                    out_dir,
                    kind,
                    f"{', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''} exist(s) there "
                    f"but {kind.command} did not write it; move it away first",
                )
            _write_json(out_dir / kind.manifest, _manifest(kind, set(old) | set(new), meta))
            for rel in new:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, out_dir / rel)
            for rel in sorted(set(old) - set(new)):
                _remove_with_empty_parents(out_dir, rel)
            _write_json(out_dir / kind.manifest, _manifest(kind, new, meta))
    except OSError as exc:
        _fail(out_dir, kind, exc)
    return [out_dir / rel for rel in new] + [out_dir / kind.manifest]


def _remove_with_empty_parents(out_dir: Path, rel: str) -> None:
    path = out_dir / rel
    if path.is_file() or path.is_symlink():
        path.unlink()
    parent = path.parent
    while parent != out_dir and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
