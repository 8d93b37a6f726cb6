"""dataset=webdataset's training set: its shards streamed, `ShardStream`.

    stream = ShardStream.of(cfg)                      # ImageData.unlabelled_images
    stream.assign(seed, rank, world, local_batch, steps)   # once the run knows its ranks and steps
    stream.caption_ids(tokenizer, length)             # image-text pairs: the workers tokenize the .txt
    for images, ids in stream.epoch_batches(epoch, first, device): ...   # uint8 (b, 3, S, S), (b, L) or None

An epoch. Each rank runs dataset.workers DataLoader processes (0: its own process), and each of these
readers takes whole shards: the epoch's seeded shuffle of the shard list is dealt round-robin to the
world x workers readers; a reader cycles through its shards (reshuffled every pass) for as long as its
share of the epoch needs, through a seeded shuffle buffer of dataset.shuffle_buffer samples, then decodes,
tokenizes and batches there. Batch i of a rank comes from its reader i mod workers (the DataLoader
takes its workers' batches in turn): an epoch is a function of (seed, epoch, shards, ranks, workers),
and a resume inside one replays it up to its step (reading, not training on, the batches before).
Augmentation runs on the device, as for every dataset.
"""
from __future__ import annotations

import itertools
import random
from typing import Any, Iterator, List, Sequence, Tuple

import torch
from torch import Tensor

from ..config import WebDatasetConfig
from ..errors import DatasetError
from .batches import ignore_interrupts, worker_error
from .shards import Bad, Reading, Sample, shard_samples, shard_urls, sizes_json_count, stack_images


def seeded(*parts: Any) -> random.Random:
    """A generator fixed by `parts` (a string seed: the same in every process and Python run)."""
    return random.Random("/".join(str(p) for p in parts))


def buffer_shuffle(items: Iterator[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """A streaming shuffle: fill a buffer of `size`, then emit a random one for each that comes in."""
    buffer: List[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


class ShardStream(torch.utils.data.IterableDataset):
    """The training set of dataset=webdataset: `shape` as a uint8 (samples_per_epoch, 3, S, S) tensor's;
    iterated in a DataLoader worker it yields that worker's batches of the epoch (module docstring)."""

    def __init__(self, urls: Sequence[str], samples: int, cfg: WebDatasetConfig):
        self.urls, self.samples, self.seed = list(urls), samples, 0   # the run's seed: assign()
        self.size, self.resize, self.workers = cfg.image_size, cfg.resize, cfg.workers
        self.buffer, self.stop, self.peek_samples = cfg.shuffle_buffer, cfg.bad_samples == "stop", cfg.peek_samples
        self.rank, self.world, self.batch, self.steps = 0, 1, 1, 0
        self.epoch, self.first, self.tokenizer, self.length = 0, 0, None, 0
        self.bad = Bad()   # the epoch's, in the training process
        self._peek: Tuple[Tensor, List[str]] | None = None

    @classmethod
    def of(cls, cfg: WebDatasetConfig) -> "ShardStream":
        """The stream of cfg.shards, of cfg.samples_per_epoch samples an epoch (or their sizes.json's)."""
        urls = shard_urls(cfg.shards, "dataset.shards")
        samples = cfg.samples_per_epoch or sizes_json_count(urls)
        if samples is None:
            raise DatasetError("dataset.samples_per_epoch is needed (open_clip's --train-num-samples): no "
                               "sizes.json beside the shards lists the samples of every one of them")
        return cls(urls, samples, cfg)

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return (self.samples, 3, self.size, self.size)

    def __len__(self) -> int:
        return self.samples

    def __getstate__(self) -> dict:   # what goes to a worker: not the peeked images
        return {**self.__dict__, "_peek": None}

    def assign(self, seed: int, rank: int, world: int, batch: int, steps: int) -> None:
        """The run's seed, this rank among `world`, its batch (the local one) and the steps of an epoch;
        checks that every slot (rank x worker) gets a shard of its own."""
        self.seed, self.rank, self.world, self.batch, self.steps = seed, rank, world, batch, steps
        slots = world * max(1, self.workers)
        if len(self.urls) < slots:
            raise DatasetError(f"dataset.shards: {len(self.urls)} shard(s) for {world} process(es) x "
                               f"{max(1, self.workers)} worker(s): every reader needs a shard of its own; lower "
                               "dataset.workers or split the data into more shards")

    def caption_ids(self, tokenizer: Any, length: int) -> None:
        """Image-text pairs: the workers read each .txt and hand its token ids (length) with the images."""
        self.tokenizer, self.length = tokenizer, length

    def reading(self, captions: bool) -> Reading:
        return Reading(self.size, self.resize, captions=captions, labels=False, stop=self.stop)

    def peek(self) -> Tuple[Tensor, List[str]]:
        """The first dataset.peek_samples good samples of the shards in their listed order (read once):
        uint8 images, which give the normalisation, and their captions (where they have one), which
        give a word vocabulary."""
        if self._peek is None:
            bad, how = Bad(), self.reading(captions=False)
            first = list(itertools.islice((s for url in self.urls for s in shard_samples(url, how, bad)),
                                          self.peek_samples))
            if not first:
                raise DatasetError(f"dataset.shards: no readable sample in {self.urls[0]} ... "
                                   f"({bad.named[0] if bad.named else 'the shards are empty'})")
            images = stack_images(first)
            self._peek = images, [s[1] for s in first if s[1] is not None]
        return self._peek

    def peek_captions(self) -> List[str]:
        """The captions of the first samples (peek), for a word vocabulary; one line when none has one."""
        captions = self.peek()[1]
        if not captions:
            raise DatasetError(f"image-text pairs need captions, and the first {len(self.peek()[0])} samples of "
                               "dataset.shards have no .txt; objective.pairs=views trains on the images alone")
        return captions

    def slot_samples(self, slot: int, slots: int, bad: Bad) -> Iterator[Sample]:
        """A slot's samples for the epoch, without end: its deal of the epoch's shard order, pass after
        pass (reshuffled each time), each pass through the shuffle buffer on its own (so a pass never
        holds a sample twice)."""
        order = list(self.urls)
        seeded(self.seed, self.epoch, "shards").shuffle(order)
        mine, how = order[slot::slots], self.reading(captions=self.tokenizer is not None)
        for n in itertools.count():
            seeded(self.seed, self.epoch, slot, n).shuffle(mine)
            one_pass = (sample for url in mine for sample in shard_samples(url, how, bad))
            got = 0
            for sample in buffer_shuffle(one_pass, self.buffer, seeded(self.seed, self.epoch, slot, n, "buffer")):
                got += 1
                yield sample
            if not got:
                raise DatasetError(f"dataset.shards: no readable sample in {', '.join(mine[:3])}"
                                   f"{' ...' if len(mine) > 3 else ''} ({bad.named[0] if bad.named else 'empty'})")

    def slot_batches(self, slot: int, slots: int) -> Iterator[Tuple[Tensor, Tensor | None, int, List[str]]]:
        """(uint8 images (b, 3, S, S), caption ids (b, L) or None, bad samples met since the last batch,
        the newly named of them) from the slot's samples."""
        bad = Bad()
        samples, counted, named = self.slot_samples(slot, slots, bad), 0, 0
        while True:
            chunk = list(itertools.islice(samples, self.batch))
            images = stack_images(chunk)
            ids = self.tokenizer.encode([s[1] for s in chunk], self.length)[0] if self.tokenizer is not None else None
            yield images, ids, bad.count - counted, bad.named[named:]
            counted, named = bad.count, len(bad.named)

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor | None, int, List[str]]]:
        """This worker's batches of the epoch from step self.first. Batch i of the rank is read by its
        reader i mod workers, and the DataLoader takes batches from its workers in turn starting with
        worker 0, so worker w is reader (first + w) mod workers: it reads that reader's batches, skipping
        those before step `first`."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = (self.first + worker) % workers
        quota, skip = len(range(reader, self.steps, workers)), len(range(reader, self.first, workers))
        batches = self.slot_batches(self.rank * workers + reader, self.world * workers)
        yield from itertools.islice(batches, skip, quota)

    def epoch_batches(self, epoch: int, first: int, device: torch.device) -> Iterator[Tuple[Tensor, Tensor | None]]:
        """This rank's batches of `epoch` from step `first` (uint8 images and caption ids on `device`),
        read by dataset.workers DataLoader processes; the epoch's bad samples gather in self.bad."""
        self.epoch, self.first, self.bad = epoch, first, Bad()
        loader = torch.utils.data.DataLoader(self, batch_size=None, num_workers=self.workers,
                                             pin_memory=device.type == "cuda", worker_init_fn=ignore_interrupts,
                                             prefetch_factor=4 if self.workers else None,
                                             generator=torch.Generator())   # not the global RNG: resume stays exact
        try:
            for images, ids, count, named in loader:
                self.bad.add(count, named)
                yield (images.to(device, non_blocking=True),
                       ids.to(device, non_blocking=True) if ids is not None else None)
        except DatasetError as err:   # from a worker, wrapped in its traceback: keep the one line
            raise worker_error(err) from None
