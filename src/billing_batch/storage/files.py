"""The files outside the lake (landing, invoices, rejects, quarantine, run summaries) on
local disk (the default) or on S3-compatible object storage (``[files] url``).

One small interface, :class:`FileArea`, over ``fsspec`` (``s3fs`` for ``s3://``): a
folder of files named relative to the area's root. What each backend guarantees:

* **Publishing is atomic.** Local disk: ``_core.files.atomic_write_files`` (temp name,
  fsync, rename). S3: each object is written by one PUT of its whole content (a multipart
  upload for a large one, which S3 also makes visible only when complete): a reader sees
  the old object, the new one, or none, never a partial one. Several files (an invoice's
  JSON and PDF) are written JSON first, PDF last, so a PDF never exists without its JSON.
* **Landing files have an identity** beyond their name: (key, size, ETag) on S3, (path,
  size) on disk; the ingest claims a file by it (see ``usage.ingest_files``).

An area is plain data (a root and the S3 settings, never a client or a credential): it
pickles to another process or machine, which opens its own client from its environment.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._core.errors import StorageError
from .._core.files import atomic_write_files
from ..config.settings import S3Settings, Settings
from .s3 import fsspec_options, is_remote

#: The areas a home has, each a ``[paths]`` name.
Area = Literal["landing", "invoices", "rejects", "quarantine", "runs"]


@dataclass(frozen=True)
class Entry:
    """One file of an area listing."""

    #: Its name relative to the area's root (``2024-01/a.jsonl``).
    name: str
    #: Where it is: an absolute local path or ``s3://bucket/key``.
    location: str
    size: int
    #: The object's ETag on S3 (quotes removed); None on local disk.
    etag: str | None


@dataclass(frozen=True)
class FileArea:
    """A folder of files: ``root`` is an absolute local path or ``s3://bucket/prefix``."""

    root: str
    s3: S3Settings

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def location(self, name: str) -> str:
        """Where ``name`` is (a local path or an ``s3://`` URL)."""
        _check_name(name)
        if self.remote:
            return f"{self.root.rstrip('/')}/{name}"
        return str(Path(self.root) / name)

    # --- writing ----------------------------------------------------------------------
    def write_many(self, files: Sequence[tuple[str, bytes]]) -> list[str]:
        """Publish several files atomically each (see the module docstring), in order;
        return their locations."""
        if not self.remote:
            paths = atomic_write_files([(Path(self.location(n)), data) for n, data in files])
            return [str(p) for p in paths]
        fs = _fs(self.s3)
        out = []
        for name, data in files:
            loc = self.location(name)
            try:
                fs.pipe_file(_key(loc), data)
            except Exception as exc:  # botocore/aiohttp errors: mapped here, once
                raise StorageError(f"cannot write {loc}: {_reason(exc)}") from exc
            out.append(loc)
        return out

    def write_text(self, name: str, text: str) -> str:
        return self.write_many([(name, text.encode("utf-8"))])[0]

    def put_file(self, local: Path, name: str) -> str:
        """Publish the local file ``local`` as ``name`` (remote: one upload; local: a
        copy through a temporary name). Returns its location."""
        if not self.remote:
            target = Path(self.location(name))
            if target.resolve() == local.resolve():
                return str(target)
            return self.write_many([(name, local.read_bytes())])[0]
        loc = self.location(name)
        try:
            _fs(self.s3).put_file(str(local), _key(loc))
        except Exception as exc:
            raise StorageError(f"cannot upload {local} to {loc}: {_reason(exc)}") from exc
        return loc

    def delete(self, name: str) -> None:
        loc = self.location(name)
        if not self.remote:
            Path(loc).unlink(missing_ok=True)
            return
        try:
            _fs(self.s3).rm_file(_key(loc))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise StorageError(f"cannot delete {loc}: {_reason(exc)}") from exc

    # --- reading ----------------------------------------------------------------------
    def read_bytes(self, name: str) -> bytes:
        """The file's content; FileNotFoundError when there is none."""
        loc = self.location(name)
        if not self.remote:
            return Path(loc).read_bytes()
        try:
            data: bytes = _fs(self.s3).cat_file(_key(loc))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot read {loc}: {_reason(exc)}") from exc
        return data

    def exists(self, name: str) -> bool:
        loc = self.location(name)
        if not self.remote:
            return os.path.lexists(loc)
        try:
            return bool(_fs(self.s3).exists(_key(loc)))
        except Exception as exc:
            raise StorageError(f"cannot look for {loc}: {_reason(exc)}") from exc

    def download(self, name: str, target: Path) -> Path:
        """Copy ``name`` to the local file ``target`` (temp name, then rename)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        loc = self.location(name)
        try:
            if self.remote:
                _fs(self.s3).get_file(_key(loc), str(tmp))
            else:
                shutil.copyfile(loc, tmp)
            os.replace(tmp, target)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot download {loc}: {_reason(exc)}") from exc
        return target

    def list(self, suffixes: tuple[str, ...] = ()) -> list[Entry]:
        """Every file under the root (recursively) whose name ends with one of
        ``suffixes`` (all when empty; hidden names never), sorted by name. A missing
        root lists nothing; a root that cannot be listed raises StorageError."""
        if not self.remote:
            raise StorageError("list() is for object storage; local folders are walked")
        prefix = _key(self.root.rstrip("/"))
        try:
            found: dict[str, dict[str, Any]] = _fs(self.s3).find(prefix, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise StorageError(f"cannot list {self.root}: {_reason(exc)}") from exc
        out = []
        for key, info in found.items():
            name = key[len(prefix) :].lstrip("/")
            base = name.rsplit("/", 1)[-1].lower()
            if info.get("type") != "file" or not name or base.startswith("."):
                continue
            if suffixes and not base.endswith(suffixes):
                continue
            etag = str(info.get("ETag") or info.get("etag") or "").strip('"') or None
            out.append(Entry(name, f"s3://{key}", int(info.get("size") or 0), etag))
        return sorted(out, key=lambda e: e.name)


def area(settings: Settings, which: Area) -> FileArea:
    """The home's ``which`` folder: ``[files] url``/<[paths] name> when set, else the
    local folder of ``[paths]``."""
    url = settings.files.url.strip()
    if url:
        if not is_remote(url):
            raise StorageError(f"[files] url must be an s3:// URL, not {url!r}")
        sub = str(getattr(settings.paths, which)).strip("/")
        return FileArea(f"{url.rstrip('/')}/{sub}", settings.s3)
    local = {
        "landing": settings.landing_dir,
        "invoices": settings.invoices_dir,
        "rejects": settings.rejects_dir,
        "quarantine": settings.quarantine_dir,
        "runs": settings.runs_dir,
    }[which]
    return FileArea(str(local), settings.s3)


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"not a usable file name: {name!r}")


def _key(location: str) -> str:
    """``s3://bucket/key`` → ``bucket/key`` (what s3fs takes)."""
    return location.split("://", 1)[1] if "://" in location else location


def _reason(exc: BaseException) -> str:
    """An error's kind and text: never the request (it may carry a signature)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


@functools.lru_cache(maxsize=8)
def _fs_for(s3: S3Settings, credentials: tuple[Any, ...]) -> Any:
    import s3fs

    del credentials  # part of the cache key: new credentials, new client
    return s3fs.S3FileSystem(**fsspec_options(s3))


def _fs(s3: S3Settings) -> Any:
    """This process's S3 client for these settings and the environment's credentials
    (built after a fork or in a Dask worker from the worker's own environment)."""
    return _fs_for(s3, (os.getpid(), *s3.credentials()))


__all__ = ["Area", "Entry", "FileArea", "area"]
