"""The explainer process of a worker (``streams.explaining``): explanations computed apart
from scoring, at the lowest CPU priority.

This module imports nothing heavy at the top: a spawned process imports it to run
``start_explainer_process`` first, which lowers the process's priority before torch,
transformers and Captum are loaded (seconds of CPU) in ``warm_up`` or the first explanation.
Being a process of its own, it never holds the worker's GIL.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from streams.children import die_with_parent

if TYPE_CHECKING:
    from models.base import ModelInput
    from models.serving.explanations import Explainer, Explanation

LOADED_VERSIONS = 4  # explainers kept loaded; the least recently used is dropped first
_LOADED: OrderedDict[str, Explainer] = OrderedDict()


def start_explainer_process(parent: int) -> None:
    """The process initializer: it ends with the worker ``parent``, and runs at the lowest
    priority (Linux nice 19), both set before anything loads."""
    die_with_parent(parent)
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)


def warm_up() -> None:
    """Load the libraries explanations need, with one torch thread."""
    import torch

    import models.serving.explanations  # noqa: F401

    torch.set_num_threads(1)


def explain_in_process(
    folder: str, steps: int, max_seq_length: int, model_input: ModelInput, predicted: str
) -> Explanation:
    """The explanation of one input by the model in ``folder``, toward ``predicted`` (text;
    a served int8 or bf16 model may rank labels unlike fp32)."""
    from models.serving.explanations import Explainer

    warm_up()
    if folder not in _LOADED:
        _LOADED[folder] = Explainer(Path(folder), steps, max_seq_length)
        while len(_LOADED) > LOADED_VERSIONS:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(folder)
    explainer = _LOADED[folder]
    target = predicted if explainer.task != "defect" and predicted in explainer.labels else None
    return explainer.explain([model_input], target)[0]
