"""dataset=webdataset's shards: open_clip's tar files (`<key>.jpg|png|...`, `<key>.txt`, optionally
`<key>.cls`), read through the `webdataset` library (pip install 'specrep[webdataset]').

    urls = shard_urls(cfg.shards, "dataset.shards")    # a brace pattern or a list of paths and URLs
    for image, caption, label in shard_samples(url, Reading(size, resize, captions, labels, stop), bad): ...
    images, labels, texts, bad = read_shards(urls, how)   # an evaluation set, decoded whole

Bad samples (no image, a missing .txt where captions are read, a missing .cls where labels are, an
image PIL cannot decode) and unreadable or truncated shards are, by dataset.bad_samples, `skip`ped,
counted and the first ones named (Bad), or `stop` the run with one line naming the shard and key. The
training stream over them is stream.py's.
"""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetError
from .files import decode_one

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff")
NAMED = 3   # bad samples named per epoch in the log (the rest are counted)
Sample = Tuple[np.ndarray, str | None, int | None]   # uint8 (S, S, 3), caption, class


def stack_images(samples: Sequence[Sample]) -> Tensor:
    """The samples' images as one uint8 (N, 3, S, S) tensor."""
    return torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2).contiguous()


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
        first = Path(missing[0]).expanduser()
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if first.is_dir():
            why = "is a folder: name its shard files, e.g. train-{000000..000009}.tar"
        elif any(c in str(first) for c in "*?["):
            why = "does not exist: shard lists take brace patterns ({000000..000009}), not globs"
        else:
            why = f"does not exist{more}" + ("" if first.is_absolute() else f" (from {Path.cwd()})")
        raise DatasetError(f"{key}: {missing[0]} {why}; write shards with benchmarks/make_shards.py or point "
                           f"{key} at yours")
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
    """Bad samples met: how many, and the first NAMED of them ("shard: key: why"); a reader that cycles
    its shards meets the same ones again, counted once (`seen`)."""
    count: int = 0
    named: List[str] = field(default_factory=list)
    seen: set = field(default_factory=set)

    def add(self, count: int, named: Sequence[str]) -> None:
        self.count += count
        self.named += list(named)[:NAMED - len(self.named)]

    def meet(self, line: str) -> None:
        if line not in self.seen:
            self.seen.add(line)
            self.add(1, [line])


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
        text = sample["txt"].decode("utf-8").strip() if "txt" in sample else None   # read where it is
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
    read = [0]   # samples grouped so far

    def broken(err: Exception) -> bool:   # webdataset's handler: False ends the shard
        if not failed:
            failed.append(err)
            cause = f"{type(err).__name__}: {str(err.args[0]) if err.args else ''}".split(" @ ")[0]
            where = ": no data, is the URL reachable?" if is_remote(url) and not read[0] else ""
            reject(url, None, f"truncated or unreadable tar after {read[0]} samples ({cause}){where}", how, bad)
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
            read[0] += 1
            if last is not None:
                yield from good(url, last, how, bad)
            last = sample
        cut = failed or not tail.whole()
        if last is not None and not (cut and isinstance(parse(last, how), str)):
            yield from good(url, last, how, bad)
        if cut and not failed:
            reject(url, None, f"truncated tar after {read[0]} samples (it ends without the end-of-archive blocks)",
                   how, bad)
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


def reject(url: str, key: str | None, why: str, how: Reading, bad: Bad) -> bool:
    """Count a bad sample (key) or shard (None), or stop on it; True (skip it and go on)."""
    line = f"{url}: {why}" if key is None else f"{url}: {key}: {why}"
    if how.stop:
        raise DatasetError(f"bad {'shard' if key is None else 'sample in'} {line}; fix or remove it, or set "
                           "dataset.bad_samples=skip")
    bad.meet(line)
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
    images = stack_images(samples)
    labels = torch.tensor([s[2] for s in samples], dtype=torch.int64) if how.labels else None
    texts = [s[1] for s in samples] if how.captions else None
    return images, labels, texts, bad
