"""Endless batch samplers: class-uniform labeled batches (a class drawn uniformly over the classes present, then a
random frame of it) and uniform unlabeled batches.

Batch b of a stream is a function of (seed, rank, b) alone, and each of its items carries its own augmentation
seed: a run resumed at batch b draws exactly the batches and augmentations the uninterrupted run drew, whatever
the number of loader workers and however far they prefetch. Each rank of a DDP run draws its own stream. An epoch
is a number of steps.
"""

from __future__ import annotations

from itertools import count
from typing import Iterator

import numpy as np

#: One item of a batch: (sample index, seed of its augmentation).
Item = tuple[int, int]


def _batch_rng(seed: int, rank: int, batch: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, rank, batch, stream])


class ClassUniformBatchSampler:
    """Each of ``batch_size`` slots draws a class uniformly over the classes present, then a random
    sample of that class: uniformly, or with probability proportional to ``weights`` (one per sample, > 0; the
    weight of the labeled source a sample comes from). ``len()`` is undefined: the trainer takes as many batches
    as it has steps."""

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0, start_batch: int = 0,
                 stream: int = 51, weights: np.ndarray | None = None):
        labels = np.asarray(labels, dtype=np.int64)
        self.classes = np.unique(labels[labels >= 0])
        if self.classes.size == 0:
            raise ValueError("no labeled sample to draw from")
        self.by_class = [np.flatnonzero(labels == c) for c in self.classes]
        self.cdf = None  # per class, the cumulative weights of its samples (None: uniform, as without weights)
        if weights is not None and not np.allclose(weights, weights[0]):
            w = np.asarray(weights, dtype=np.float64)
            self.cdf = [np.cumsum(w[rows]) / w[rows].sum() for rows in self.by_class]
        self.batch_size, self.seed, self.rank, self.start_batch = batch_size, seed, rank, start_batch
        self.stream = stream  # another number: an independent stream of the same labels

    def __iter__(self) -> Iterator[list[Item]]:
        for b in count(self.start_batch):
            rng = _batch_rng(self.seed, self.rank, b, self.stream)
            picks = rng.integers(len(self.classes), size=self.batch_size)
            if self.cdf is None:
                rows = [int(self.by_class[k][rng.integers(len(self.by_class[k]))]) for k in picks]
            else:
                rows = [int(self.by_class[k][min(np.searchsorted(self.cdf[k], rng.random(), side="right"),
                                                 len(self.by_class[k]) - 1)]) for k in picks]
            yield list(zip(rows, rng.integers(2**62, size=self.batch_size).tolist()))


class UniformBatchSampler:
    """Uniform random samples with replacement (the unlabeled pool), one stream per rank."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, start_batch: int = 0):
        if n <= 0:
            raise ValueError("no unlabeled image to draw from")
        self.n, self.batch_size, self.seed, self.rank, self.start_batch = n, batch_size, seed, rank, start_batch

    def __iter__(self) -> Iterator[list[Item]]:
        for b in count(self.start_batch):
            rng = _batch_rng(self.seed, self.rank, b, 52)
            yield list(zip(rng.integers(self.n, size=self.batch_size).tolist(),
                           rng.integers(2**62, size=self.batch_size).tolist()))
