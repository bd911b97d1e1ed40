"""benchmarks/RESULTS.md is rendered from the results files, and every benchmark writes one."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_results_page_is_the_rendering_of_the_results_files() -> None:
    checked = subprocess.run(
        [sys.executable, str(BENCHMARKS / "render_results.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_every_results_file_names_its_command_commit_and_machine() -> None:
    files = sorted((BENCHMARKS / "results").glob("*.json"))
    assert files
    for path in files:
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["benchmark"] == path.stem, path
        assert document["command"] and document["commit"], path
        assert document["machine"]["cores"], path
        for table in document["tables"]:
            assert all(len(row) == len(table["columns"]) for row in table["rows"]), path


def test_every_benchmark_records_its_figures() -> None:
    for script in sorted(BENCHMARKS.glob("bench_*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        called = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert "record" in called, f"{script.name} does not write benchmarks/results/"
