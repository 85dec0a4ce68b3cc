"""Endless batch samplers: class-uniform labeled batches (a class drawn uniformly over the classes present, then a
random frame of it) and uniform unlabeled batches.

Each rank of a DDP run draws its own stream (the generator is seeded with seed, rank and the starting
step, so a resumed run continues with fresh, reproducible batches). An epoch is a number of steps.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


class ClassUniformBatchSampler:
    """Each of ``batch_size`` slots draws a class uniformly over the classes present, then a random
    sample of that class. ``len()`` is undefined: the trainer takes as many batches as it has steps."""

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0, start_step: int = 0):
        labels = np.asarray(labels, dtype=np.int64)
        self.classes = np.unique(labels[labels >= 0])
        if self.classes.size == 0:
            raise ValueError("no labeled sample to draw from")
        self.by_class = [np.flatnonzero(labels == c) for c in self.classes]
        self.batch_size = batch_size
        self.rng = np.random.default_rng([seed, rank, start_step, 51])

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            picks = self.rng.integers(len(self.classes), size=self.batch_size)
            yield [int(self.by_class[k][self.rng.integers(len(self.by_class[k]))]) for k in picks]


class UniformBatchSampler:
    """Uniform random samples with replacement (the unlabeled pool), one stream per rank."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, start_step: int = 0):
        if n <= 0:
            raise ValueError("no unlabeled image to draw from")
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng([seed, rank, start_step, 52])

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.rng.integers(self.n, size=self.batch_size).tolist()
