"""Render ``benchmarks/RESULTS.md`` (and its plots) from ``benchmarks/results/*.json``.

Each results file was written by a benchmark through ``recording.record``; this page shows
every one of them, in file-name order: its title, its command, commit and machine, its first
note, its tables, its other notes, and its plots as PNG files in ``benchmarks/results/plots/``.
Nothing here knows a benchmark: a new one appears once its results file exists.

    .venv/bin/python benchmarks/render_results.py            (or: make results)
    .venv/bin/python benchmarks/render_results.py --check    (exit 1 when RESULTS.md is stale)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from recording import RESULTS_DIR

PAGE = RESULTS_DIR.parent / "RESULTS.md"
PLOTS_DIR = RESULTS_DIR / "plots"
HEADER = """\
# Measured figures

Rendered by `benchmarks/render_results.py` from the files in `benchmarks/results/`, which the
benchmarks write (`benchmarks/recording.py`): edit a benchmark or rerun it, not this page. Each
section names the command that produced it, the commit it ran at and the machine. The models'
recipes are in [docs/models.md](../docs/models.md) and the adaptation rounds in
[docs/adaptation.md](../docs/adaptation.md).
"""


def load_results(folder: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every results file of the folder, in file-name order."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]


def cell(value: Any) -> str:
    """A table cell: integers with thousands separators, floats to four significant places."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1:
            return f"{value:.3f}"
        return f"{value:,.1f}" if abs(value) < 10_000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def table(spec: dict[str, Any]) -> list[str]:
    columns = spec["columns"]
    lines = [f"**{spec['title']}**", ""] if spec.get("title") else []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("| " + " | ".join("---" for _ in columns) + " |")
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in spec["rows"]]
    return [*lines, ""]


def plot_file(name: str, index: int) -> Path:
    return PLOTS_DIR / f"{name}-{index}.png"


def draw(spec: dict[str, Any], path: Path) -> None:
    """One plot as a PNG: a line with markers per series."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4), dpi=100)
    for label, points in spec["series"].items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        axes.plot(xs, ys, marker="o", linestyle="none" if spec.get("points") else "-", label=label)
        if spec.get("annotate"):
            for x, y, text in zip(xs, ys, spec["annotate"].get(label, []), strict=False):
                axes.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if spec.get("x_log"):
        axes.set_xscale("log")
    axes.set_title(spec["title"])
    axes.set_xlabel(spec["x_label"])
    axes.set_ylabel(spec["y_label"])
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)


def section(document: dict[str, Any]) -> list[str]:
    name = document["benchmark"]
    machine = document.get("machine", {})
    flags = ", ".join(machine.get("cpu_flags", [])) or "none of interest"
    lines = [
        f"## {document.get('title', name)}",
        "",
        f"`{document['command']}` at commit `{document.get('commit', 'unknown')}`, "
        f"{document.get('written_at', 'unknown date')}; {machine.get('cpu', 'unknown CPU')}, "
        f"{machine.get('cores', '?')} cores (CPU features: {flags}). "
        f"Figures: [`results/{name}.json`](results/{name}.json).",
        "",
    ]
    # The first note introduces the tables; the others discuss them.
    notes = document.get("notes", [])
    for note in notes[:1]:
        lines += [note, ""]
    for spec in document.get("tables", []):
        lines += table(spec)
    for note in notes[1:]:
        lines += [note, ""]
    for index, spec in enumerate(document.get("plots", [])):
        lines += [f"![{spec['title']}](results/plots/{plot_file(name, index).name})", ""]
    return lines


def render(documents: list[dict[str, Any]]) -> str:
    lines = [HEADER]
    for document in documents:
        lines += section(document)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that RESULTS.md is up to date"
    )
    arguments = parser.parse_args()
    documents = load_results()
    page = render(documents)
    if arguments.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page:
            sys.exit(f"{PAGE} is not rendered from {RESULTS_DIR}: run benchmarks/render_results.py")
        return
    for document in documents:
        for index, spec in enumerate(document.get("plots", [])):
            draw(spec, plot_file(document["benchmark"], index))
    PAGE.write_text(page, encoding="utf-8")
    print(f"{PAGE}: {len(documents)} results files")


if __name__ == "__main__":
    main()
