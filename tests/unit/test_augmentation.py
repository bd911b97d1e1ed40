"""Perturbed copies for distillation: numbers keep their shape, words are dropped and swapped
but never all, and the same seed gives the same copies."""

from __future__ import annotations

import random
import re
from collections import Counter

from models.training.augmentation import MIN_WORDS, NUMBER, augmented, perturb

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007",
    "The company 's net sales fell by 5 % in the third quarter",
    "Shares up",
]


def shape(number: str) -> str:
    return re.sub(r"\d", "9", number)


def test_numbers_keep_their_shape_and_words_are_dropped_but_never_all() -> None:
    rng = random.Random(0)
    changed_numbers = dropped = 0
    for _ in range(200):
        for text in TEXTS:
            copy = perturb(text, rng)
            assert copy.strip()
            numbers = NUMBER.findall(copy)
            assert not Counter(map(shape, numbers)) - Counter(map(shape, NUMBER.findall(text)))
            changed_numbers += bool(set(numbers) - set(NUMBER.findall(text)))
            dropped += len(copy.split()) < len(text.split())
            if len(text.split()) < MIN_WORDS:
                assert sorted(copy.split()) == sorted(text.split())
    assert changed_numbers > 300 and dropped > 300


def test_copies_come_in_rounds_and_repeat_with_the_seed() -> None:
    copies = augmented(TEXTS, 3, seed=13)
    assert len(copies) == 9
    assert copies == augmented(TEXTS, 3, seed=13)
    assert copies != augmented(TEXTS, 3, seed=14)
    # Round by round: the i-th copy of every text, then the next round.
    assert [c.split()[0] in t for c, t in zip(copies[:3], TEXTS, strict=True)].count(True) >= 2
    assert augmented(TEXTS, 0, seed=13) == []
