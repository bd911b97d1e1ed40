"""Child processes end with their parent, however the parent ends (SIGTERM, SIGINT, an
exception, SIGKILL, the OOM killer): an orphaned explainer or worker holds its memory for
nothing, and a supervisor restarting the parent would pile them up."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """In a child process: have Linux SIGKILL it when the thread that started it ends, and exit
    now if ``parent`` (the pid that started it) has ended already. Nothing elsewhere than
    Linux. Raises OSError when prctl refuses."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)
