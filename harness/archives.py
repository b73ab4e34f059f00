"""Safe unpacking of official dataset archives (zip or tar) into a dataset root.

Official archives come from mirrors and e-mailed links, so an entry is never trusted: every entry
is checked before anything is written (absolute paths, ``..`` components, drive letters, links
whose target leaves the archive, device files and FIFOs are refused, naming the entry), files are
then written by this module (never by ``extractall``) into a staging folder beside the target,
with the real parent directory checked to lie inside the staging folder before every write, and the
staging folder is renamed into place only when everything succeeded. An archive whose entries all
sit in one top-level folder (``SYSU-MM01/cam1/...``) has that folder stripped, so the dataset's
layout starts at the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import DataError, UsageError


@dataclasses.dataclass(frozen=True)
class Entry:
    """One archive member, normalised: ``name`` is a relative POSIX path without ``.`` parts."""

    name: str
    kind: str  # "file", "dir", "symlink" or "hardlink"
    link: str = ""
    """For links: the target, relative to the archive root (already resolved and checked)."""


def _clean(name: str, archive: Path, what: str = "entry") -> str:
    """The normalised relative path of an entry name, or `DataError` if it could escape."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise DataError(f"{archive}: {what} {name!r} is an absolute path; refusing to unpack the archive")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{archive}: {what} {name!r} contains '..'; refusing to unpack the archive")
    return "/".join(parts)


def _link_target(entry_name: str, target: str, archive: Path) -> str:
    """A symlink target resolved against the link's folder; it must stay inside the archive and
    may not contain '..' at all (a '..' after a link to '.' would climb out for real)."""
    if target.startswith("/") or "\\" in target or (len(target) > 1 and target[1] == ":"):
        raise DataError(f"{archive}: link {entry_name!r} points to {target!r}, outside the archive; refusing to unpack")
    if ".." in target.split("/"):
        raise DataError(f"{archive}: link {entry_name!r} points to {target!r} (uses '..'); refusing to unpack")
    return _clean(posixpath.join(posixpath.dirname(entry_name), target), archive, "link target")


def _zip_entries(handle: zipfile.ZipFile, archive: Path) -> list[tuple[Entry, zipfile.ZipInfo]]:
    entries = []
    for info in handle.infolist():
        name = _clean(info.filename, archive)
        mode = info.external_attr >> 16
        if info.is_dir():
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zips written without type bits hold plain files
            raise DataError(f"{archive}: entry {info.filename!r} is a special file (mode {oct(mode)}); refusing to unpack")
        else:
            kind = "file"
        link = _link_target(name, handle.read(info).decode("utf-8", "replace"), archive) if kind == "symlink" else ""
        if name:
            entries.append((Entry(name, kind, link), info))
    return entries


def _tar_entries(handle: tarfile.TarFile, archive: Path) -> list[tuple[Entry, tarfile.TarInfo]]:
    entries = []
    for member in handle.getmembers():
        name = _clean(member.name, archive)
        if member.isdir():
            kind, link = "dir", ""
        elif member.isreg():
            kind, link = "file", ""
        elif member.issym():
            kind, link = "symlink", _link_target(name, member.linkname, archive)
        elif member.islnk():
            kind, link = "hardlink", _clean(member.linkname, archive, "hard-link target")
        else:
            raise DataError(f"{archive}: entry {member.name!r} is a device file or FIFO; refusing to unpack")
        if name:
            entries.append((Entry(name, kind, link), member))
    return entries


def _open_entries(archive: Path) -> tuple[zipfile.ZipFile | tarfile.TarFile, list[tuple[Entry, object]]]:
    if not archive.is_file():
        raise UsageError(f"archive {archive} does not exist")
    if zipfile.is_zipfile(archive):
        zip_handle = zipfile.ZipFile(archive)
        return zip_handle, list(_zip_entries(zip_handle, archive))
    try:
        tar_handle = tarfile.open(archive)
    except tarfile.TarError as exc:
        raise DataError(f"{archive} is neither a zip nor a (compressed) tar archive: {exc}") from None
    return tar_handle, list(_tar_entries(tar_handle, archive))


def _common_top(entries: list[Entry]) -> str:
    """The single top-level folder every entry sits in, or '' when there is none."""
    tops = {entry.name.split("/", 1)[0] for entry in entries}
    if len(tops) != 1:
        return ""
    top = tops.pop()
    nested = all(entry.name != top or entry.kind == "dir" for entry in entries)
    return top if nested and any(entry.name.startswith(top + "/") for entry in entries) else ""


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == os.path.realpath(root)


def _write(stage: Path, relative: str, source: IO[bytes] | None) -> Path:
    destination = stage / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(destination.parent, stage):
        raise DataError(f"entry {relative!r} would be written through a link outside the target; refusing")
    if destination.is_symlink():
        raise DataError(f"entry {relative!r} would overwrite a link; refusing")
    with open(destination, "wb") as out:
        if source is not None:
            shutil.copyfileobj(source, out)
    return destination


def extract(archive: Path, target: Path) -> dict[str, int | str]:
    """Unpack ``archive`` into ``target`` (which must not exist or be empty); returns what was written."""
    archive, target = Path(archive).expanduser(), Path(target).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not empty; remove it or choose another --data-root")
    handle, pairs = _open_entries(archive)
    top = _common_top([entry for entry, _ in pairs])
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.importing-", dir=target.parent))
    counts = {"files": 0, "directories": 0, "links": 0}
    try:
        with handle:
            links = []
            for entry, member in pairs:
                relative = entry.name[len(top) + 1 :] if top else entry.name
                if not relative:
                    continue
                if entry.kind == "dir":
                    (stage / relative).mkdir(parents=True, exist_ok=True)
                    if not _inside(stage / relative, stage):
                        raise DataError(f"{archive}: folder {entry.name!r} resolves outside the target; refusing")
                    counts["directories"] += 1
                elif entry.kind == "file":
                    with _member_stream(handle, member) as source:
                        _write(stage, relative, source)
                    counts["files"] += 1
                else:
                    links.append((entry, member, relative))
            for entry, member, relative in links:  # after the files, so hard links find their source
                link = entry.link[len(top) + 1 :] if top and entry.link.startswith(top + "/") else entry.link
                if entry.kind == "hardlink":
                    source_path = stage / link
                    if not source_path.is_file() or not _inside(source_path, stage):
                        raise DataError(f"{archive}: hard link {entry.name!r} names {entry.link!r}, not a file of the archive")
                    with open(source_path, "rb") as source:
                        _write(stage, relative, source)
                else:
                    path = stage / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(os.path.relpath(stage / link, path.parent), path)
                    if not _inside(path, stage):
                        path.unlink()
                        raise DataError(f"{archive}: link {entry.name!r} resolves outside the target; refusing")
                counts["links"] += 1
        if target.exists():
            target.rmdir()
        os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return {**counts, "stripped_top_folder": top}


@contextlib.contextmanager
def _member_stream(handle: zipfile.ZipFile | tarfile.TarFile, member: object) -> Iterator[IO[bytes]]:
    """A readable stream of one archive member."""
    stream = handle.open(member) if isinstance(handle, zipfile.ZipFile) else handle.extractfile(member)  # type: ignore[arg-type]
    if stream is None:
        raise DataError(f"cannot read archive member {member}")
    with stream:
        yield stream
