"""No orphans: the processes a worker starts end when it ends, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A parent that starts the worker's explainer process, says its pid, and waits to be killed.
PARENT = """
import os, sys, time
from streams.explaining import explainer_pool
pool = explainer_pool()
print(pool.submit(os.getpid).result(timeout=120), flush=True)
time.sleep(600)
"""


def _children(pid: int) -> set[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(line) for line in found.stdout.split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_explainer_and_its_resource_tracker_end_with_a_killed_worker() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        explainer = int(parent.stdout.readline())
        children = _children(parent.pid)
        # The explainer, and multiprocessing's resource tracker beside it.
        assert explainer in children and len(children) >= 2, children
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [child for child in children if _alive(child)], "orphans left behind"
    finally:
        parent.kill()
        for child in _children(parent.pid):
            os.kill(child, signal.SIGKILL)
