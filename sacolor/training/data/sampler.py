"""A distributed sampler that can start mid-epoch and seeds every sample's
augmentation, so a resumed run sees exactly the data an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler

# Spreads (seed, epoch, index) over 63 bits; any odd constants would do.
_SEED_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch."""
    return (seed * _SEED_MIX[0] + epoch * _SEED_MIX[1] + index) % (2**63)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(index, sample_seed)`` and able to skip ahead.

    The permutation of each epoch depends only on (seed, epoch), as in
    ``DistributedSampler``; ``set_position(epoch, start)`` makes the next
    iteration begin at this rank's ``start``-th sample of that epoch.
    Works without a process group when ``num_replicas`` and ``rank`` are given.
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start:]
        self.start = 0  # only the first iteration after a resume skips
        return iter([(i, sample_seed(self.seed, self.epoch, i)) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start
