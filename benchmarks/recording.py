"""Where a benchmark's figures go: ``benchmarks/results/<name>.json``, with their provenance.

Every benchmark ends with :func:`record`. The file holds what was measured (``figures``, in
the benchmark's own shape), how to show it (``tables`` and ``plots``, which
``benchmarks/render_results.py`` turns into ``benchmarks/RESULTS.md`` and PNG files without
knowing any benchmark), and where it comes from: the command, the commit, the machine (CPU
model, cores, memory and the instruction sets that decide which runtimes run natively) and the
versions of the libraries on the measured path.

A table is ``{"title", "columns": [...], "rows": [[...], ...]}``; a plot is ``{"title",
"x_label", "y_label", "series": {name: [[x, y], ...]}, "x_log": bool, "points": bool}`` (points:
markers only, for a scatter such as a frontier). Free text about the
run (what it does not show, what differed) goes to ``notes``, one paragraph per item.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOTE = "--note"
# CPU features that decide which precisions and runtimes run natively.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
PACKAGES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "onnxruntime",
    "optimum",
    "lightgbm",
    "pydantic",
    "aiokafka",
    "faust-streaming",
    "clickhouse-connect",
    "chdb",
)


def results_path(name: str) -> Path:
    """The default ``--out`` of the benchmark ``name``."""
    return RESULTS_DIR / f"{name}.json"


def machine() -> dict[str, Any]:
    """This machine as far as the figures depend on it (Linux; elsewhere less is known)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": memory_gb,
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
        "system": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    """Python's and each installed package's version on the measured path."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


# The code a run measures is the code it started with: a commit made while an hour-long run
# goes on must not be named as its source.
STARTED_AT = commit()


def dict_table(rows: list[dict[str, Any]], title: str = "") -> dict[str, Any]:
    """A table of records with the same keys: one column per scalar key, in the first
    record's order (lists and mappings stay in the figures only)."""
    if not rows:
        return {"title": title, "columns": [], "rows": []}
    columns = [k for k, v in rows[0].items() if v is None or isinstance(v, str | int | float)]
    return {"title": title, "columns": columns, "rows": [[r.get(k) for k in columns] for r in rows]}


def add_note_option(parser: argparse.ArgumentParser) -> None:
    """``--note TEXT``, repeatable: a paragraph the results file keeps with the figures, as
    ``record(notes=...)``; ``command_line`` leaves it out."""
    parser.add_argument(
        NOTE, action="append", default=[], help="a paragraph the results file keeps with them"
    )


def command_line() -> str:
    """How this benchmark was started, less any ``--note`` (the notes are kept as notes)."""
    words, skip = [], False
    for word in sys.argv:
        if not skip and word != NOTE and not word.startswith(f"{NOTE}="):
            words.append(word)
        skip = word == NOTE
    return shlex.join(["python", *words])


def record(
    name: str,
    title: str,
    figures: Any,
    *,
    out: Path | None = None,
    tables: list[dict[str, Any]] | None = None,
    plots: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write the run's figures and provenance to ``out`` (default: the results folder's
    ``<name>.json``); returns the path written. The file's stem names the result on the results
    page and its plots, so a second run written elsewhere stands beside the first."""
    path = out or results_path(name)
    document = {
        "benchmark": path.stem,
        "title": title,
        "command": command_line(),
        "commit": STARTED_AT,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "figures": figures,
        "tables": tables or [],
        "plots": plots or [],
        "notes": notes or [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"figures written to {path}")
    return path
