"""Checkpoints that live in object storage (S3 and the stores that speak its API: MinIO, Ceph,
R2, GCS's XML API), pinned by reference rather than by copy.

A checkpoint folder `s3://BUCKET/PREFIX/` is recorded as a manifest: every object under the
prefix with its size, ETag and, in a bucket with versioning on, its version id. A version id
is a pin: the framework deleting or overwriting its checkpoint only hides that version behind a
newer one (or a delete marker), and gov restores the version it recorded. Without versioning
the ETag is all gov can hold, and a delete loses the checkpoint: gov says so when it registers
one, and checks every recorded object (its version, its ETag and its size) before it names a
checkpoint as a restore point or restores it.

boto3 (the `s3` extra) reads the endpoint and the credentials as the AWS tools do:
`AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) for a store other than AWS, `AWS_PROFILE` or the
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` pair.

`S3Folder` lets the frameworks' layout rules (`governance.layouts`) read a prefix as they read
a local folder: one listing per look, the marker files fetched when a rule reads them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ArtifactError, GovError

SCHEME = "s3://"
_WORKERS = 8  # concurrent HEAD and GET requests (boto3's clients are thread-safe)


def is_uri(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def split(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of a folder URI; the prefix ends with "/" unless it is the bucket's
    root."""
    if not is_uri(uri):
        raise GovError(f"{uri}: not an s3:// URI")
    bucket, _, prefix = uri[len(SCHEME) :].partition("/")
    if not bucket or "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise GovError(f"{uri}: not a folder URI of the form s3://BUCKET/PREFIX/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def folder_uri(uri: str) -> str:
    bucket, prefix = split(uri)
    return f"{SCHEME}{bucket}/{prefix}"


def client() -> Any:
    """An S3 client configured from the environment, as the AWS CLI is."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise GovError(
            "checkpoints in object storage (s3://) need boto3: pip install 'rl-gov[s3]'"
        ) from None
    # standard retries (3 attempts unless AWS_MAX_ATTEMPTS says otherwise)
    config = Config(retries={"mode": "standard"}, max_pool_connections=16)
    try:
        return boto3.session.Session().client("s3", config=config)
    except Exception as exc:  # a profile that does not exist, an endpoint that is no URL, ...
        raise GovError(f"cannot set up the S3 client from the environment: {exc}") from None


def _failure(uri: str, exc: Exception) -> str:
    """One line for a failed request: the store's own error code and message where it gave one."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        return f"{uri}: {code}: {message}".rstrip(": ")
    return f"{uri}: {type(exc).__name__}: {exc}".splitlines()[0]


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NoSuchVersion", "400", "InvalidArgument")


# -- the manifest: what a checkpoint in object storage is ------------------------------------
@dataclass(frozen=True)
class StoredObject:
    path: str  # its place inside the checkpoint folder
    key: str
    size: int
    etag: str
    version: str | None  # None: the bucket keeps no versions of it


@dataclass(frozen=True)
class Manifest:
    """A checkpoint folder in a bucket, object by object."""

    uri: str
    bucket: str
    objects: tuple[StoredObject, ...]

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def versioned(self) -> bool:
        return all(o.version is not None for o in self.objects)

    def to_bytes(self) -> bytes:
        record = {
            "uri": self.uri,
            "bucket": self.bucket,
            "objects": [
                {"path": o.path, "key": o.key, "size": o.size, "etag": o.etag, "version": o.version}
                for o in self.objects
            ],
        }
        return (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()

    @property
    def md5(self) -> str:
        """The content address of the reference (what the checkpoint's record holds)."""
        return hashlib.md5(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        try:
            record = json.loads(data)
            objects = tuple(
                StoredObject(
                    path=str(o["path"]),
                    key=str(o["key"]),
                    size=int(o["size"]),
                    etag=str(o["etag"]),
                    version=None if o["version"] is None else str(o["version"]),
                )
                for o in record["objects"]
            )
            manifest = cls(uri=str(record["uri"]), bucket=str(record["bucket"]), objects=objects)
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{where}: not a manifest of objects: {exc}") from None
        for o in objects:
            if PurePosixPath(o.path).is_absolute() or ".." in PurePosixPath(o.path).parts:
                raise ArtifactError(f"{where}: names a path outside the checkpoint: {o.path}")
        return manifest


def _safe(rel: str, where: str) -> str:
    """A key's place inside its checkpoint folder, refused where it would leave the folder on
    restore."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or "" in rel.split("/"):
        raise GovError(f"{where}: the object {rel!r} in it has a name no folder can hold")
    return rel


def snapshot(uri: str, s3: Any = None) -> Manifest:
    """The manifest of the folder `uri` as it stands now (see `manifest`)."""
    return manifest(S3Folder.open(uri, s3))


def manifest(folder: S3Folder, parts: tuple[tuple[str, S3Folder], ...] = ()) -> Manifest:
    """The manifest of a checkpoint folder from the listing its layout rule read: each object's
    version there, so what is pinned is what was judged complete, even if the framework
    deletes or overwrites it a moment later. `parts`: (place, folder) where the checkpoint is
    several folders kept side by side (a model and its critic); each must hold objects.
    Raises FileNotFoundError when a folder holds nothing (the framework deleted it)."""
    listing = folder.listing
    objects: list[StoredObject] = []
    for place, part in parts or (("", folder),):
        found = part.files()
        if not found:
            raise FileNotFoundError(f"nothing under {part.uri}")
        for rel, entry in found:
            _safe(rel, part.uri)
            objects.append(
                StoredObject(
                    path=f"{place}/{rel}" if place else rel,
                    key=part.object_key(rel),
                    size=entry.size,
                    etag=entry.etag,
                    version=listing.version(entry.version),
                )
            )
    return Manifest(folder.uri, listing.bucket, tuple(sorted(objects, key=lambda o: o.path)))


class Gone(FileNotFoundError):
    """A recorded object (or its recorded version) that the store no longer has."""


def problem(recorded: Manifest, s3: Any = None) -> str | None:
    """Why the checkpoint can no longer be restored exactly as recorded (an object, or its
    recorded version, gone or changed), or None when every object is there."""
    try:
        check(recorded, s3)
    except (GovError, Gone) as exc:
        return str(exc)
    return None


def check(recorded: Manifest, s3: Any = None) -> None:
    """Ask the store for every recorded object: raises Gone where one (or its version) is no
    longer there, GovError where one changed or the store cannot be read."""
    s3 = s3 or client()

    def one(o: StoredObject) -> None:
        where = f"s3://{recorded.bucket}/{o.key}"
        try:
            extra = {"VersionId": o.version} if o.version else {}
            head = s3.head_object(Bucket=recorded.bucket, Key=o.key, **extra)
        except Exception as exc:
            if _missing(exc):
                version = f" version {o.version}" if o.version else ""
                raise Gone(f"{where}{version} is gone") from None
            raise GovError(f"cannot read {_failure(where, exc)}") from None
        if str(head.get("ETag")) != o.etag or int(head.get("ContentLength", -1)) != o.size:
            raise GovError(f"{where} changed since it was registered (ETag or size differs)")

    from concurrent.futures import ThreadPoolExecutor  # its import loads logging: paid here only

    with ThreadPoolExecutor(_WORKERS) as pool:
        list(pool.map(one, recorded.objects))


def download(recorded: Manifest, target: Path, s3: Any = None, purpose: str = "restore") -> None:
    """Restore the checkpoint to the new folder `target`: every object at its recorded
    version, checked against its size and (a single-part upload's ETag is its md5) its
    content, made whole in a temporary sibling and renamed into place. `purpose` is what a
    failure says could not be done (restore it, count it)."""
    s3 = s3 or client()
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    def fetch(o: StoredObject) -> None:
        body: dict[str, Any] = {}
        where = f"s3://{recorded.bucket}/{o.key}"
        dest = tmp / o.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        extra = {"VersionId": o.version} if o.version else {}
        try:
            body = s3.get_object(Bucket=recorded.bucket, Key=o.key, IfMatch=o.etag, **extra)
            digest, size = hashlib.md5(), 0
            with dest.open("wb") as out:
                for chunk in body["Body"].iter_chunks(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except Exception as exc:
            if _missing(exc) or "PreconditionFailed" in str(exc) or "412" in str(exc):
                raise ArtifactError(f"{where} is gone or changed: cannot {purpose} it") from None
            raise ArtifactError(f"cannot {purpose} {_failure(where, exc)}") from None
        plain = o.etag.strip('"')
        # A single-part upload's ETag is its md5, unless the store encrypted it with a key of
        # its own (SSE-KMS) or the caller's (SSE-C); If-Match has checked the ETag already
        encrypted = str(body.get("ServerSideEncryption", "")).startswith("aws:kms") or bool(
            body.get("SSECustomerAlgorithm")
        )
        md5_known = "-" not in plain and not encrypted
        if size != o.size or (md5_known and digest.hexdigest() != plain):
            raise ArtifactError(f"{where}: the copy read does not match what was listed")

    try:
        tmp.mkdir()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(_WORKERS) as pool:
            list(pool.map(fetch, recorded.objects))
        tmp.replace(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- a prefix read as a folder, for the layout rules -------------------------------------------
@dataclass(frozen=True)
class _Entry:
    size: int
    etag: str
    version: str | None  # as the store names it ("null": from before versioning, or none)


# What a store answers when it does not list versions: a policy without s3:ListBucketVersions,
# or a store that does not implement it
_NO_VERSIONS = ("AccessDenied", "NotImplemented", "MethodNotAllowed", "501", "405", "403")


class _Listing:
    """Every object under a prefix, listed once, each with its current version where the store
    lists versions: the folder tree a layout rule walks, and what a checkpoint found complete
    in it is pinned by."""

    def __init__(self, uri: str, s3: Any) -> None:
        self.s3 = s3
        self.bucket, self.prefix = split(uri)
        self.files: dict[str, _Entry] = {}
        self.folders: set[str] = {""}
        self._versioning: bool | None = None
        try:
            try:
                self._read(versions=True)
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code not in _NO_VERSIONS:
                    raise
                self.files.clear()  # the store lists no versions: ETags alone, then
                self._read(versions=False)
        except Exception as exc:
            raise GovError(f"cannot list {_failure(uri, exc)}") from None

    def _read(self, *, versions: bool) -> None:
        if versions:
            pages = self.s3.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            items = (v for page in pages for v in page.get("Versions", []) if v.get("IsLatest"))
        else:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            items = (v for page in pages for v in page.get("Contents", []))
        for item in items:
            rel = str(item["Key"])[len(self.prefix) :]
            if not rel:
                continue
            parts = rel.rstrip("/").split("/")
            for i in range(1, len(parts)):
                self.folders.add("/".join(parts[:i]))
            if rel.endswith("/"):
                self.folders.add(rel.rstrip("/"))  # a folder placeholder object
            else:
                version = item.get("VersionId") if versions else None
                self.files[rel] = _Entry(
                    int(item["Size"]), str(item["ETag"]), None if version is None else str(version)
                )

    def version(self, listed: str | None) -> str | None:
        """The version to pin by: the one listed, where it pins anything. An object written
        before versioning was turned on has the version "null", which the bucket keeps once it
        is on; in a bucket that keeps no versions, every object is "null" and only its ETag
        can be checked."""
        if listed in (None, ""):
            return None
        if listed != "null":
            return listed
        if self._versioning is None:
            try:
                status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
            except Exception:  # not allowed to ask: pin by ETag, the weaker claim
                status = None
            self._versioning = status == "Enabled"
        return "null" if self._versioning else None


class S3Folder:
    """A path inside a listed prefix, with the few `pathlib.Path` methods the layout rules
    use. Its content is the listing's: a later change is seen on the next listing."""

    def __init__(self, listing: _Listing, rel: str = "") -> None:
        self._listing, self._rel = listing, rel

    @classmethod
    def open(cls, uri: str, s3: Any = None) -> S3Folder:
        return cls(_Listing(uri, s3 or client()))

    @property
    def uri(self) -> str:
        rel = f"{self._rel}/" if self._rel else ""
        return f"{SCHEME}{self._listing.bucket}/{self._listing.prefix}{rel}"

    @property
    def key(self) -> str:
        return f"{self._listing.prefix}{self._rel}"

    def object_key(self, rel: str) -> str:
        """The key of the object at `rel` inside this folder."""
        return (
            f"{self._listing.prefix}{self._rel}/{rel}"
            if self._rel
            else f"{self._listing.prefix}{rel}"
        )

    @property
    def listing(self) -> _Listing:
        return self._listing

    def files(self) -> list[tuple[str, _Entry]]:
        """Every object below, by its place in this folder, as listed."""
        start = f"{self._rel}/" if self._rel else ""
        return sorted(
            (rel[len(start) :], entry)
            for rel, entry in self._listing.files.items()
            if rel.startswith(start)
        )

    def fingerprint(self) -> str:
        """What changes when any object below is added, removed or written again."""
        listed = "\n".join(f"{r}\t{e.size}\t{e.etag}\t{e.version}" for r, e in self.files())
        return hashlib.sha256(listed.encode()).hexdigest()

    def __str__(self) -> str:
        return self.uri.rstrip("/")

    def __repr__(self) -> str:
        return f"S3Folder({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Folder) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __truediv__(self, name: str) -> S3Folder:
        return S3Folder(self._listing, f"{self._rel}/{name}" if self._rel else name)

    @property
    def name(self) -> str:
        return self._rel.rsplit("/", 1)[-1] if self._rel else self._listing.prefix.rstrip("/")

    @property
    def parent(self) -> S3Folder:
        return S3Folder(self._listing, self._rel.rpartition("/")[0])

    def is_dir(self) -> bool:
        return self._rel in self._listing.folders

    def is_file(self) -> bool:
        return self._rel in self._listing.files

    def exists(self) -> bool:
        return self.is_dir() or self.is_file()

    def is_symlink(self) -> bool:
        return False

    def iterdir(self) -> Iterator[S3Folder]:
        if not self.is_dir():
            raise FileNotFoundError(self.uri)
        start = f"{self._rel}/" if self._rel else ""
        names = {
            rel[len(start) :].split("/")[0]
            for rel in (*self._listing.files, *self._listing.folders)
            if rel.startswith(start) and rel != self._rel
        }
        for name in sorted(names):
            yield self / name

    def rglob(self, pattern: str) -> Iterator[S3Folder]:
        """Every file and folder below, as `Path.rglob("*")` gives them (the layout rules ask
        for "*" and match names themselves: a sharded save is a folder of shards)."""
        if pattern != "*":
            raise ValueError("only rglob('*') is supported on object storage")
        start = f"{self._rel}/" if self._rel else ""
        below = {*self._listing.files, *self._listing.folders}
        for rel in sorted(below):
            if rel.startswith(start) and rel != self._rel:
                yield S3Folder(self._listing, rel)

    def read_text(self, encoding: str = "utf-8") -> str:
        if not self.is_file():
            raise FileNotFoundError(self.uri)
        try:
            body = self._listing.s3.get_object(Bucket=self._listing.bucket, Key=self.key)
            data: bytes = body["Body"].read()
        except Exception as exc:
            if _missing(exc):  # deleted since the listing
                raise FileNotFoundError(self.uri) from None
            raise OSError(_failure(str(self), exc)) from None
        return data.decode(encoding)
