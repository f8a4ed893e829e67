"""Inputs and outputs as fsspec URLs (``s3://``, ``gs://``, ``memory://``, ``file://`` …).

Discovery, remote output folders and their manifest; the per-image wrapper that fetches an input and
uploads its outputs is `featmap.run.work.work_url`. ``file://`` URLs are turned into plain paths at the
boundary: local files keep the local fast path (no fsspec, atomic rename) exactly.

>>> is_remote("s3://bucket/photos/"), is_remote("photos/"), is_remote("file:///data/photos")
(True, False, False)
>>> local_path("file:///data/photos")
'/data/photos'
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from featmap.errors import FeatmapError, MissingExtraError, install_hint
from featmap.frozen import frozen_dataclass

__all__ = [
    "RemoteOutput",
    "UrlImage",
    "discover_urls",
    "filesystem",
    "is_remote",
    "join_url",
    "local_out_dir",
    "local_path",
    "require_fsspec",
    "storage_options",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB_CHARS = set("*?[")


def is_remote(text: str | object) -> bool:
    """True for a URL that fsspec must open (any scheme but ``file://``)."""
    match = _SCHEME.match(str(text))
    return bool(match) and match.group(1).lower() != "file"  # type: ignore[union-attr]


#: Where a remote output's target paths are worked out; nothing is ever written there.
REMOTE_PLACEHOLDER = Path("/featmap-remote-output")


def local_out_dir(out: str | os.PathLike[str]) -> Path:
    """The folder a job works its targets out in: the output folder, or a placeholder for a URL.

    >>> local_out_dir("maps"), local_out_dir("s3://bucket/maps/")
    (PosixPath('maps'), PosixPath('/featmap-remote-output'))
    """
    return REMOTE_PLACEHOLDER if is_remote(out) else Path(out)


def local_path(text: str) -> str:
    """A ``file://`` URL as a plain path (``localhost`` and percent escapes as RFC 8089 has them); anything
    else unchanged.

    Examples
    --------
    >>> local_path("file:///data/my%20photos/a.png"), local_path("file://localhost/tmp"), local_path("a.png")
    ('/data/my photos/a.png', '/tmp', 'a.png')
    """
    if not text[:7].lower() == "file://":
        return text
    from urllib.parse import unquote

    rest = text[len("file://") :]
    if rest.lower().startswith("localhost/"):
        rest = rest[len("localhost") :]
    return unquote(rest)


#: Exceptions of the object-storage clients (botocore, aiobotocore, s3fs, gcsfs) by class name, with what a
#: user sets to fix them.
_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "NoAuthTokenError")
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError")
_CREDENTIAL_SETTINGS = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); for a server other than AWS also "
    "AWS_ENDPOINT_URL (e.g. http://127.0.0.1:9000)"
)


def storage_error(exc: BaseException, where: str) -> FeatmapError | None:
    """An object-storage client's exception (no credentials, endpoint unreachable, access refused) as one
    featmap error naming the settings that fix it; None for any other exception.

    Examples
    --------
    >>> class NoCredentialsError(Exception): ...
    >>> NoCredentialsError.__module__ = "botocore.exceptions"
    >>> print(storage_error(NoCredentialsError("Unable to locate credentials"), "s3://b/x.png"))
    s3://b/x.png: no credentials for object storage; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ...
    """
    kinds = [type(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None]
    for kind, error in zip(kinds, (exc, exc.__cause__, exc.__context__), strict=False):
        module, name = kind.__module__, kind.__name__
        if not module.startswith(("botocore", "aiobotocore", "s3fs", "gcsfs", "google.auth", "aiohttp")):
            continue
        text = " ".join(str(error).split())[:160]
        if name in _CREDENTIALS:
            return FeatmapError(where, "no credentials for object storage", _CREDENTIAL_SETTINGS)
        if name in _UNREACHABLE:
            return FeatmapError(
                where,
                f"cannot reach the object storage endpoint ({text})",
                "check AWS_ENDPOINT_URL (or FSSPEC_S3_ENDPOINT_URL) and that the server is running",
            )
        return FeatmapError(
            where,
            f"object storage refused the request ({name}: {text})",
            "check the URL, the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and AWS_ENDPOINT_URL",
        )
    return None


def join_url(base: str, rel: str) -> str:
    """``base`` and a relative POSIX path joined with one slash."""
    return base.rstrip("/") + "/" + rel


def require_fsspec() -> Any:
    """Import fsspec, or raise the one-line error naming the install that brings it."""
    try:
        import fsspec
    except ImportError:
        raise MissingExtraError(
            "URL inputs and outputs", "need fsspec, which is not installed", install_hint("dask")
        ) from None
    return fsspec


#: Object storage clients' attempts per request (the first and one retry) and seconds to connect: an endpoint that
#: is down is one line within a second or two, not after botocore's default 5 attempts with back-off (~6 s, or
#: minutes where the connection hangs). ``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE`` and fsspec's own ``s3``
#: ``config_kwargs`` (``FSSPEC_S3_CONFIG_KWARGS``) win over these.
S3_ATTEMPTS = 2
S3_CONNECT_SECONDS = 5.0


def storage_options(url: str) -> dict[str, Any]:
    """The fsspec options featmap gives a URL's file system: for ``s3://``, botocore's retries and connect timeout
    (`S3_ATTEMPTS`, `S3_CONNECT_SECONDS`) unless the user set their own; nothing for other schemes.

    Examples
    --------
    >>> storage_options("memory://x")
    {}
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("s3", "s3a"):
        return {}
    import os

    from fsspec.config import conf

    given = dict(conf.get("s3", {}).get("config_kwargs", {}))
    mine: dict[str, Any] = {"connect_timeout": S3_CONNECT_SECONDS}
    if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        mine["retries"] = {"mode": "standard", "total_max_attempts": S3_ATTEMPTS}
    return {"config_kwargs": {**mine, **given}}


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` (with `storage_options`) and the path in it."""
    fsspec = require_fsspec()
    try:
        return fsspec.core.url_to_fs(url, **storage_options(url))  # type: ignore[no-any-return]
    except (ImportError, ValueError) as exc:
        scheme = url.split("://", 1)[0]
        fix = (
            "pip install s3fs" if scheme in ("s3", "s3a") else "pip install gcsfs" if scheme in ("gs", "gcs") else None
        )
        raise FeatmapError(url, f"cannot open this kind of URL ({exc})", fix or "check the URL's scheme") from None


# ----------------------------------------------------------------------------------------------- inputs


@frozen_dataclass
class UrlImage:
    """A remote input: its URL, and like `featmap.io.discover.InputImage` a path (for its name), output folder
    and output stem."""

    path: Path
    rel_dir: Path
    stem: str
    url: str


def discover_urls(
    specs: Sequence[str], *, recursive: bool = False, exclude: str | None = None
) -> tuple[list[Any], list[tuple[str, str]], int]:
    """Expand URLs (files, folders, globs) and local paths into inputs: ``(images, problems, ignored)``.

    Remote folders are listed once (one LIST on an object store); images are recognised by their suffix,
    since reading every header remotely would cost a request each (a non-image then fails when read).
    Hidden files and folders and the ``exclude`` output URL are skipped, as locally.
    """
    from featmap.io.discover import _unique_stems, discover
    from featmap.io.images import IMAGE_SUFFIXES

    found: list[Any] = []
    problems: list[tuple[str, str]] = []
    ignored = 0
    local = [s for s in specs if not is_remote(s)]
    if local:
        items, problems, ignored = discover([local_path(s) for s in local], recursive=recursive)
        found.extend(items)
    excluded = filesystem(exclude)[1].rstrip("/") + "/" if exclude and is_remote(exclude) else None
    for spec in (s for s in specs if is_remote(s)):
        fs, root = filesystem(spec)
        root = root.rstrip("/")
        base = spec.rstrip("/")
        if _GLOB_CHARS & set(root):
            pairs = [(p, "", fs.unstrip_protocol(p)) for p in sorted(fs.glob(root)) if fs.isfile(p)]
        elif fs.isdir(root):
            files = sorted(fs.find(root, maxdepth=None if recursive else 1, withdirs=False))
            pairs = [
                (p, str(PurePosixPath(p).parent.relative_to(root)), join_url(base, p[len(root) + 1 :])) for p in files
            ]
        elif fs.isfile(root):
            pairs = [(root, "", spec)]
        else:
            problems.append((spec, "no such file, folder or matching pattern"))
            continue
        for path, rel, url in pairs:
            name = PurePosixPath(path)
            if (excluded and path.startswith(excluded)) or name.name.startswith("."):
                continue
            if rel != "." and any(p.startswith(".") for p in PurePosixPath(rel).parts):
                continue
            if name.suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            found.append(UrlImage(Path(name.name), Path("" if rel == "." else rel), name.stem, url))
    return _unique_stems(found), problems, ignored


# ----------------------------------------------------------------------------------------------- outputs


class RemoteOutput:
    """A remote output folder: what it holds (listed once) and its manifest.

    An object store cannot append, so the manifest is rewritten whole (one PUT) at the end, after an
    interrupt, and meanwhile at most every ``flush_seconds`` or ten times as long as the last write took,
    whichever is longer (so a large manifest costs at most a tenth of the client's time); records are kept
    in this process meanwhile.
    """

    def __init__(self, url: str, flush_seconds: float = 30.0) -> None:
        from featmap.io.outputs import MANIFEST_NAME

        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.root = self.root.rstrip("/")
        self.manifest_path = f"{self.root}/{MANIFEST_NAME}"
        self.flush_seconds = flush_seconds
        self.existing: set[str] = set()
        try:
            if self.fs.isdir(self.root):
                prefix = len(self.root) + 1
                self.existing = {p[prefix:] for p in self.fs.find(self.root, withdirs=False)}
        except (OSError, ValueError) as exc:
            raise FeatmapError(url, f"cannot list the output folder ({exc})", "check the URL and access") from None
        text = ""
        if MANIFEST_NAME in self.existing:
            text = self.fs.cat_file(self.manifest_path).decode("utf-8", "replace")
            if text and not text.endswith("\n"):
                text += "\n"  # a line cut short says nothing; the next one starts on its own line
        from featmap.io.manifest_index import index_lines

        self.by_png = index_lines(text.splitlines(keepends=True))
        self._parts = [text]
        self._dirty = False
        self._flushed_at = 0.0
        self._flush_cost = 0.0

    def made_by(self, rel: str, source: str, digest: str) -> bool:
        """True when the manifest says ``rel`` was written from ``source`` with options ``digest``."""
        return self.by_png.get(rel) == (source, digest)

    def append(self, records: Sequence[dict[str, Any]], now: float) -> None:
        """Add records; the manifest is written when ``flush_seconds`` have passed since the last write."""
        import json

        if not records:
            return
        self._parts.append("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        for rec in records:
            if isinstance(rec.get("png"), str):
                self.by_png[rec["png"]] = (str(rec.get("input")), str(rec.get("options")))
                self.existing.add(rec["png"])
        self._dirty = True
        if now - self._flushed_at >= max(self.flush_seconds, 10 * self._flush_cost):
            self.flush(now)

    def flush(self, now: float = 0.0) -> None:
        """Write the whole manifest in one PUT."""
        if self._dirty:
            import time

            began = time.perf_counter()
            text = "".join(self._parts)
            self._parts = [text]  # joined once per write, not once per image
            self.fs.pipe_file(self.manifest_path, text.encode())
            self._flush_cost = time.perf_counter() - began
            self._dirty = False
            self._flushed_at = now

    def manifest_lines(self) -> list[str]:
        """The manifest's lines as they stand (what was read at the start and every record since)."""
        return "".join(self._parts).splitlines()

    def put(self, rel: str, data: bytes) -> str:
        """Write ``rel`` whole in one PUT (an object appears complete or not at all); returns its URL."""
        self.fs.pipe_file(f"{self.root}/{rel}", data)
        self.existing.add(rel)
        return join_url(self.url, rel)

    def remove(self, rels: Sequence[str]) -> None:
        """Delete outputs (of unfinished images), ignoring those already gone."""
        for rel in rels:
            try:
                self.fs.rm_file(f"{self.root}/{rel}")
            except (OSError, ValueError):
                pass
