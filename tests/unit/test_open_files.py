"""A worker raises its own limit of open descriptors as far as the system allows."""

from __future__ import annotations

import resource

from streams.app import OPEN_FILES_WITHOUT_LIMIT, raise_open_files_limit


def test_a_worker_raises_its_soft_limit_of_open_files_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256 if hard == resource.RLIM_INFINITY else min(256, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
        raised = raise_open_files_limit()
        wanted = OPEN_FILES_WITHOUT_LIMIT if hard == resource.RLIM_INFINITY else hard
        assert raised == wanted == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[1] == hard
        assert raise_open_files_limit() == wanted  # already there: unchanged
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
