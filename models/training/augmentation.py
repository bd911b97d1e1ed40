"""Perturbed copies of training texts, for a teacher to label in distillation.

    perturb(text: str, rng: random.Random) -> str
    augmented(texts: Sequence[str], copies: int, seed: int) -> list[str]

A small labeled set shows a student few points near each sentence; the teacher's predictions
on perturbed copies show it more (TinyBERT's data augmentation, Jiao et al. 2020, replaced
words with their neighbours in a word-vector space; here, with no vectors, words are dropped,
neighbours swapped and numbers changed). A copy's meaning may differ from its source's, so
copies carry no label of their own: only the teacher's soft labels train on them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
DROP = 0.1  # chance that a word is dropped
SWAP = 0.5  # chance that one pair of neighbouring words is swapped
MIN_WORDS = 4  # shorter texts keep all their words


def _new_number(match: re.Match[str], rng: random.Random) -> str:
    """A number of the same shape (digits, separator and decimals) as the one matched."""
    return "".join(
        str(rng.randint(1 if i == 0 else 0, 9)) if char.isdigit() else char
        for i, char in enumerate(match.group())
    )


def perturb(text: str, rng: random.Random) -> str:
    """``text`` with each number changed to another of its shape, each word dropped with
    chance ``DROP`` (texts of at least ``MIN_WORDS`` words, one word always kept) and, with
    chance ``SWAP``, one pair of neighbouring words swapped."""
    words = NUMBER.sub(lambda m: _new_number(m, rng), text).split()
    if len(words) >= MIN_WORDS:
        kept = [word for word in words if rng.random() >= DROP]
        words = kept or [rng.choice(words)]
    if len(words) > 1 and rng.random() < SWAP:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def augmented(texts: Sequence[str], copies: int, seed: int) -> list[str]:
    """``copies`` perturbed copies of each text (``perturb``), in order: every text's first
    copy, then every text's second, ...; the same for the same seed."""
    rng = random.Random(seed)
    return [perturb(text, rng) for _ in range(copies) for text in texts]
