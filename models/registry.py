"""A model registry on the local filesystem.

Layout under the root (``settings.models_dir``, by default ``$SIGNALYARD_HOME/models``)::

    <domain>/versions/v1/       a finished model folder (config.json, *.safetensors,
    <domain>/versions/v2/       tokenizer files, labels.json, metrics.json, metadata.json)
    <domain>/live.json          {"version": "v2", "history": ["v1", "v2"]}

A version folder appears by one ``os.rename`` of a fully written staging folder, so readers
never see half a model. The live pointer is rewritten through a temporary file and
``os.replace``, so switching versions is atomic too; ``history`` is the order in which
versions went live, which is what ``rollback`` walks back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import DomainName
from models.errors import ModelNotFoundError, RegistryError

LIVE_FILE = "live.json"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.json"
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class VersionInfo:
    domain: DomainName
    version: str
    path: Path
    live: bool
    metadata: dict[str, Any]
    metrics: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON so that a reader sees the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the pointer is for every reader
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# Files that describe a model rather than make it: rewriting them changes no decision.
_DESCRIPTIONS = frozenset({METADATA_FILE, METRICS_FILE})
CONTENT_HASH = "content_sha256"  # the metadata key of the hash


def content_sha256(folder: Path) -> str:
    """SHA-256 (hex) of a model folder's weights, config, tokenizer and every other file but
    its metadata and metrics: over each file's path (relative, POSIX) and bytes, in path order.
    The same bytes give the same hash wherever the folder lies."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative in _DESCRIPTIONS:
            continue
        digest.update(relative.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def recorded_sha256(folder: Path) -> str:
    """The hash recorded when the folder was registered, else computed now."""
    return str(_read_json(Path(folder) / METADATA_FILE).get(CONTENT_HASH) or content_sha256(folder))


DOMAIN_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Registry:
    """Versioned model folders per domain, with exactly one live version each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def _domain_dir(self, domain: DomainName) -> Path:
        # The registry keeps any domain's models; the name only has to be a safe folder name.
        if not DOMAIN_NAME.fullmatch(domain):
            raise RegistryError(f"invalid domain name {domain!r} (lowercase letters, digits, _)")
        return self.root / domain

    def _pointer(self, domain: DomainName) -> dict[str, Any]:
        return _read_json(self._domain_dir(domain) / LIVE_FILE)

    def version_dir(self, domain: DomainName, version: str) -> Path:
        return self._domain_dir(domain) / "versions" / version

    def version_ids(self, domain: DomainName) -> list[str]:
        """Registered versions, oldest first."""
        folder = self._domain_dir(domain) / "versions"
        found = (
            [p.name for p in folder.iterdir() if _VERSION.match(p.name)] if folder.is_dir() else []
        )
        return sorted(found, key=lambda name: int(name[1:]))

    def live_version(self, domain: DomainName) -> str | None:
        return self._pointer(domain).get("version")

    def live_dir(self, domain: DomainName) -> Path:
        """The live version's folder, or ModelNotFoundError naming how to get one."""
        version = self.live_version(domain)
        if version is None:
            raise ModelNotFoundError(
                f"no live {domain} model in {self.root} (train one: signalyard train {domain})"
            )
        return self.version_dir(domain, version)

    def metadata(self, domain: DomainName, version: str) -> dict[str, Any]:
        """The metadata of a version; empty when it has none."""
        return _read_json(self.version_dir(domain, version) / METADATA_FILE)

    def versions(self, domain: DomainName) -> list[VersionInfo]:
        live = self.live_version(domain)
        return [
            VersionInfo(
                domain=domain,
                version=version,
                path=self.version_dir(domain, version),
                live=version == live,
                metadata=_read_json(self.version_dir(domain, version) / METADATA_FILE),
                metrics=_read_json(self.version_dir(domain, version) / METRICS_FILE),
            )
            for version in self.version_ids(domain)
        ]

    def register(self, domain: DomainName, folder: Path, promote: bool = True) -> str:
        """Copy a finished model folder in as the next version; return its id."""
        folder = Path(folder)
        if not (folder / METADATA_FILE).is_file():
            raise RegistryError(f"{folder} is not a model folder: it has no {METADATA_FILE}")
        versions = self._domain_dir(domain) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        staging = self._domain_dir(domain) / f".staging-{uuid.uuid4().hex}"
        shutil.copytree(folder, staging)
        try:
            metadata = _read_json(staging / METADATA_FILE)
            write_json_atomic(
                staging / METADATA_FILE, {**metadata, CONTENT_HASH: content_sha256(staging)}
            )
            while True:
                existing = self.version_ids(domain)
                version = f"v{int(existing[-1][1:]) + 1 if existing else 1}"
                try:
                    # Renaming onto an existing folder fails, so two concurrent
                    # registrations can never claim the same id.
                    os.rename(staging, versions / version)
                    break
                except OSError:
                    if not (versions / version).exists():
                        raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if promote:
            self.promote(domain, version)
        return version

    def existing_version_dir(self, domain: DomainName, version: str) -> Path:
        """The folder of a registered version, or RegistryError naming those there are."""
        folder = self.version_dir(domain, version)
        if not (folder / METADATA_FILE).is_file():
            known = ", ".join(self.version_ids(domain)) or "none"
            raise RegistryError(f"{domain} has no version {version!r} (registered: {known})")
        return folder

    def promote(self, domain: DomainName, version: str) -> None:
        """Make ``version`` the live one."""
        self.existing_version_dir(domain, version)
        pointer = self._pointer(domain)
        history = [v for v in pointer.get("history", []) if v != version] + [version]
        write_json_atomic(
            self._domain_dir(domain) / LIVE_FILE, {"version": version, "history": history}
        )

    def rollback(self, domain: DomainName) -> str:
        """Make the version that was live before the current one live again; return it."""
        pointer = self._pointer(domain)
        history = [v for v in pointer.get("history", []) if self.version_dir(domain, v).is_dir()]
        if len(history) < 2:
            raise RegistryError(f"{domain} has no earlier live version to roll back to")
        previous = history[-2]
        write_json_atomic(
            self._domain_dir(domain) / LIVE_FILE,
            {"version": previous, "history": history[:-1]},
        )
        return previous


def read_metadata(model_dir: Path) -> dict:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{model_dir} is not a model folder: it has no {METADATA_FILE}")
    return json.loads(path.read_text(encoding="utf-8"))
