"""``signalyard worker`` as a child process with the settings of its parent.

The demo, the tests and the benchmarks run workers beside themselves; this is the one way they
do it. The child receives the parent's settings through SIGNALYARD_* variables (so a test's
private home, topics and broker carry over), plus any overrides, and writes its log to a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from config.settings import ENV_PREFIX, Settings, settings_environment
from streams.children import die_with_parent


class WorkerProcess:
    def __init__(
        self,
        settings: Settings,
        log: Path,
        args: Sequence[str] = ("worker",),
        overrides: dict[str, str] | None = None,
    ) -> None:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        self.env = inherited | settings_environment(settings) | (overrides or {})
        self.log = log
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra_args: str) -> WorkerProcess:
        command = [sys.executable, "-m", "signalyard", *self.args, *extra_args]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Ctrl-C in a terminal reaches the parent, which stops the child in order; a
                # parent that ends without stopping it (SIGKILL) takes it along.
                start_new_session=True,
                preexec_fn=partial(die_with_parent, os.getpid()),
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM: the worker commits what it delivered, then exits; its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL: a crash, nothing committed on the way out."""
        assert self.process is not None
        self.process.kill()
        return self.process.wait(timeout=30)

    def cleanup(self) -> None:
        if self.running:
            self.kill()

    def tail(self, characters: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-characters:] if self.log.exists() else ""
