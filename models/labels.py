"""Labels as a model's output positions: the one place a list of true labels meets the order
of a model's outputs (``labels.json``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.errors import DataError


def label_indices(truth: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Each true label's position (n,) in ``labels``, the order of a model's outputs. Raises
    DataError naming the labels that are not among ``labels``."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(truth) - set(index))
    if unknown:
        raise DataError(f"labels the model does not know: {', '.join(unknown)}")
    return np.array([index[label] for label in truth], dtype=np.int64)
