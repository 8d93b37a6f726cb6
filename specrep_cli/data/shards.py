"""dataset=webdataset: open_clip's tar shards (`<key>.jpg|png|...`, `<key>.txt`, optionally `<key>.cls`),
read through the `webdataset` library (pip install 'specrep[webdataset]').

    urls = shard_urls(cfg.shards, "dataset.shards")   # a brace pattern or a list of paths and URLs
    stream = ShardStream.of(cfg)                      # the training set, streamed (ImageData.unlabelled_images)
    stream.assign(rank, world, local_batch, steps)    # once the run knows its ranks and steps
    stream.caption_ids(tokenizer, length)             # image-text pairs: the workers tokenize the .txt
    for images, ids in stream.epoch_batches(epoch, first, device): ...   # uint8 (b, 3, S, S), (b, L) or None
    images, labels, texts = read_shards(urls, cfg, labels=True)          # an evaluation set, decoded whole

An epoch. Each rank runs dataset.workers DataLoader processes (0: its own process), and each of these
slots reads whole shards: the epoch's seeded shuffle of the shard list is dealt round-robin to the
world x workers slots; a slot cycles through its shards (reshuffled every pass) for as long as its share
of the epoch needs, through a seeded shuffle buffer of dataset.shuffle_buffer samples, then decodes,
tokenizes and batches there. Batch i of a rank comes from its reader i mod workers (the DataLoader
takes its workers' batches in turn): an epoch is a function of (seed, epoch, shards, ranks, workers),
and a resume inside one replays it up to its step (reading, not training on, the batches before).
Augmentation runs on the device, as for every dataset.

Bad samples (no image, a missing .txt where captions are read, a missing .cls where labels are, an
image PIL cannot decode) and unreadable or truncated shards are, by dataset.bad_samples, `skip`ped,
counted and the first ones named in the log, or `stop` the run with one line naming the shard and key.
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..config import WebDatasetConfig
from ..errors import DatasetError
from .batches import worker_error
from .files import decode_one

log = logging.getLogger("specrep")
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff")
NAMED = 3   # bad samples named per epoch in the log (the rest are counted)
Sample = Tuple[np.ndarray, str | None, int | None]   # uint8 (S, S, 3), caption, class


def is_remote(url: str) -> bool:
    """A URL or a `pipe:` command (webdataset's gopen opens it), not a local path."""
    return "://" in url or url.startswith("pipe:")


def shard_urls(spec: Any, key: str) -> List[str]:
    """A brace pattern, or a list of paths and URLs (each may be a pattern), expanded; every local
    path must exist (a DatasetError naming the first missing one)."""
    from webdataset.shardlists import expand_urls  # the webdataset extra, only for this dataset

    urls = [u for item in ([spec] if isinstance(spec, str) else list(spec)) for u in expand_urls(str(item))]
    missing = [u for u in urls if not is_remote(u) and not Path(u).expanduser().is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{key}: {missing[0]} does not exist{more}; write shards with "
                           "benchmarks/make_shards.py or point the pattern at yours")
    return [u if is_remote(u) else str(Path(u).expanduser()) for u in urls]


def sizes_json_count(urls: Sequence[str]) -> int | None:
    """The number of samples in the shards by the sizes.json beside them (open_clip's convention:
    {shard file name: samples}); None when a shard is remote or not listed."""
    total, listed = 0, {}
    for url in urls:
        if is_remote(url):
            return None
        folder = Path(url).parent
        if folder not in listed:
            try:
                listed[folder] = json.loads((folder / "sizes.json").read_text())
            except (OSError, ValueError):
                return None
        count = listed[folder].get(Path(url).name) if isinstance(listed[folder], dict) else None
        if not isinstance(count, int):
            return None
        total += count
    return total


@dataclass
class Bad:
    """Bad samples met: how many, and the first NAMED of them ("shard: key: why")."""
    count: int = 0
    named: List[str] = field(default_factory=list)

    def add(self, count: int, named: Sequence[str]) -> None:
        self.count += count
        self.named += list(named)[:NAMED - len(self.named)]


@dataclass(frozen=True)
class Reading:
    """How samples are read: the image size and resize mode, whether captions (.txt) and labels (.cls)
    are needed, and what a bad sample does (dataset.bad_samples: skip or stop)."""
    size: int
    resize: str
    captions: bool
    labels: bool
    stop: bool


def parse(sample: dict, how: Reading) -> Sample | str:
    """One sample's decoded image, caption and class, or why it is bad."""
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        return f"no image ({', '.join('.' + k for k in IMAGE_KEYS[:3])}, ...)"
    if how.captions and "txt" not in sample:
        return "no .txt"
    if how.labels and "cls" not in sample:
        return "no .cls"
    try:
        image = decode_one(io.BytesIO(sample[key]), how.size, how.resize)
    except Exception as err:   # PIL raises many types for broken files
        return f"corrupt image .{key} ({type(err).__name__})"
    try:
        text = sample["txt"].decode("utf-8").strip() if how.captions else None
        label = int(sample["cls"].decode("utf-8").strip()) if how.labels else None
    except (UnicodeDecodeError, ValueError):
        return "unreadable .txt or .cls (not UTF-8 text, or .cls not an integer)"
    return image, text, label


class Tail:
    """A shard's byte stream that remembers how many zero bytes it has ended in so far: a whole tar
    ends in two empty 512-byte blocks at least (then zeros to a whole record), a truncated one does not."""
    END = 1024

    def __init__(self, raw: Any):
        self.raw, self.zeros = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            kept = len(data.rstrip(b"\0"))
            self.zeros = self.zeros + len(data) if kept == 0 else len(data) - kept
        return data

    def whole(self) -> bool:
        """Read to the end (the record's padding after the end blocks): did the bytes end as a tar's do?"""
        while self.read(1 << 16):
            pass
        return self.zeros >= self.END


def shard_samples(url: str, how: Reading, bad: Bad) -> Iterator[Sample]:
    """The good samples of one shard, in its order; bad ones, and an unreadable or truncated tar (once,
    its cut-off last sample with it), are added to `bad`, or stop with a DatasetError under how.stop."""
    from webdataset.gopen import gopen  # the webdataset extra, only for this dataset
    from webdataset.tariterators import group_by_keys, tar_file_expander

    failed: List[Exception] = []

    def broken(err: Exception) -> bool:   # webdataset's handler: False ends the shard
        if not failed:
            failed.append(err)
            why = f"unreadable or truncated tar ({type(err).__name__}: {str(err.args[0]) if err.args else ''}"
            why = why.split(" @ ")[0] + (", no data: is the URL reachable?)" if is_remote(url) else ")")
            reject(url, "-", why, how, bad)
        return False

    try:
        tail = Tail(gopen(url))
    except Exception as err:   # gopen raises what the scheme's opener raises
        broken(err)
        return
    try:
        last = None   # held back until the shard is known whole: a cut-off last sample is the truncation's
        for sample in group_by_keys(tar_file_expander([{"url": url, "stream": tail}], handler=broken),
                                    handler=broken):
            if failed:
                break
            if last is not None:
                yield from good(url, last, how, bad)
            last = sample
        cut = failed or not tail.whole()
        if last is not None and not (cut and isinstance(parse(last, how), str)):
            yield from good(url, last, how, bad)
        if cut and not failed:
            reject(url, "-", "truncated tar (it ends without the end-of-archive blocks)", how, bad)
    finally:
        try:
            tail.raw.close()   # a pipe's (curl's) exit status is read here
        except Exception as err:
            broken(err)


def good(url: str, sample: dict, how: Reading, bad: Bad) -> Iterator[Sample]:
    """The sample parsed, if it is good; else rejected."""
    parsed = parse(sample, how)
    if isinstance(parsed, str):
        reject(url, sample.get("__key__", "?"), parsed, how, bad)
    else:
        yield parsed


def reject(url: str, key: str, why: str, how: Reading, bad: Bad) -> bool:
    """Count a bad sample (or shard), or stop on it; True (skip it and go on)."""
    line = f"{url}: {key}: {why}"
    if how.stop:
        raise DatasetError(f"bad sample in {line}; fix or remove it, or set dataset.bad_samples=skip")
    bad.add(1, [line])
    return True


def read_shards(urls: Sequence[str], how: Reading) -> Tuple[Tensor, Tensor | None, List[str] | None, Bad]:
    """Every good sample of `urls`, in order, decoded: uint8 images (N, 3, S, S), labels (N,) when
    how.labels, captions when how.captions, and the bad ones; shards read in parallel threads."""
    def one(url: str) -> Tuple[List[Sample], Bad]:
        bad = Bad()
        return list(shard_samples(url, how, bad)), bad

    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        read = list(pool.map(one, urls))
    samples = [s for shard, _ in read for s in shard]
    bad = Bad()
    for _, b in read:
        bad.add(b.count, b.named)
    if not samples:
        raise DatasetError(f"{urls[0]}{' ...' if len(urls) > 1 else ''}: no readable sample in "
                           f"{len(urls)} shard(s) ({bad.named[0] if bad.named else 'empty'})")
    images = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([s[2] for s in samples], dtype=torch.int64) if how.labels else None
    texts = [s[1] for s in samples] if how.captions else None
    return images, labels, texts, bad


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

    def __init__(self, urls: Sequence[str], samples: int, cfg: WebDatasetConfig, seed: int = 0):
        self.urls, self.samples, self.seed = list(urls), samples, seed
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
            raise DatasetError("dataset.samples_per_epoch is needed: the shards have no sizes.json beside them "
                               "listing each one's samples (open_clip's --train-num-samples)")
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
        uint8 images, which give the normalisation, and captions, which give a word vocabulary."""
        if self._peek is None:
            bad, how = Bad(), self.reading(captions=True)
            first = list(itertools.islice((s for url in self.urls for s in shard_samples(url, how, bad)),
                                          self.peek_samples))
            if not first:
                raise DatasetError(f"dataset.shards: no readable sample with a caption in {self.urls[0]} ... "
                                   f"({bad.named[0] if bad.named else 'the shards are empty'})")
            images = torch.from_numpy(np.stack([s[0] for s in first])).permute(0, 3, 1, 2).contiguous()
            self._peek = images, [s[1] for s in first]
        return self._peek

    def slot_samples(self, slot: int, slots: int, bad: Bad) -> Iterator[Sample]:
        """A slot's samples for the epoch, without end: its deal of the epoch's shard order, cycled
        (reshuffled every pass), through the shuffle buffer."""
        order = list(self.urls)
        seeded(self.seed, self.epoch, "shards").shuffle(order)
        mine, how = order[slot::slots], self.reading(captions=self.tokenizer is not None)

        def passes() -> Iterator[Sample]:
            for n in itertools.count():
                seeded(self.seed, self.epoch, slot, n).shuffle(mine)
                got = 0
                for url in mine:
                    for sample in shard_samples(url, how, bad):
                        got += 1
                        yield sample
                if not got:
                    raise DatasetError(f"dataset.shards: no readable sample in {', '.join(mine[:3])}"
                                       f"{' ...' if len(mine) > 3 else ''} ({bad.named[0] if bad.named else 'empty'})")

        return buffer_shuffle(passes(), self.buffer, seeded(self.seed, self.epoch, slot, "buffer"))

    def slot_batches(self, slot: int, slots: int) -> Iterator[Tuple[Tensor, Tensor | None, int, List[str]]]:
        """(uint8 images (b, 3, S, S), caption ids (b, L) or None, bad samples met since the last batch,
        the newly named of them) from the slot's samples."""
        bad = Bad()
        samples, counted, named = self.slot_samples(slot, slots, bad), 0, 0
        while True:
            chunk = list(itertools.islice(samples, self.batch))
            images = torch.from_numpy(np.stack([s[0] for s in chunk])).permute(0, 3, 1, 2).contiguous()
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
                                             pin_memory=device.type == "cuda",
                                             prefetch_factor=4 if self.workers else None,
                                             generator=torch.Generator())   # not the global RNG: resume stays exact
        try:
            for images, ids, count, named in loader:
                self.bad.add(count, named)
                yield (images.to(device, non_blocking=True),
                       ids.to(device, non_blocking=True) if ids is not None else None)
        except DatasetError as err:   # from a worker, wrapped in its traceback: keep the one line
            raise worker_error(err) from None
