"""dataset=webdataset's reading: the shard list, how an epoch is dealt to ranks and workers, resume
inside an epoch, and bad samples, on shards whose every image tells which shard it came from."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("webdataset", reason="dataset=webdataset is an extra: pip install 'specrep[webdataset]'")

from fake_datasets import write_shards  # noqa: E402

from specrep_cli.config import WebDatasetConfig  # noqa: E402
from specrep_cli.data import shards as S  # noqa: E402
from specrep_cli.data.stream import ShardStream, buffer_shuffle  # noqa: E402
from specrep_cli.errors import DatasetError  # noqa: E402

PER_SHARD = 8


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> list:
    return [str(p) for p in write_shards(tmp_path_factory.mktemp("shards"), shards=4, per_shard=PER_SHARD)]


def stream(urls, samples=32, workers=0, buffer=4, **kw) -> ShardStream:
    cfg = WebDatasetConfig(shards=list(urls), eval_root="unused", image_size=8, workers=workers,
                           shuffle_buffer=buffer, **kw)
    return ShardStream(urls, samples, cfg)


def shard_of(images: torch.Tensor) -> list:
    """Which shard each image came from (write_shards fills shard k's images with 10 k)."""
    return (images[:, 0, 0, 0] // 10).tolist()


def test_a_brace_pattern_and_a_list_expand_and_a_missing_shard_is_named(four):
    folder = Path(four[0]).parent
    assert S.shard_urls(f"{folder}/train-{{000000..000003}}.tar", "dataset.shards") == four
    assert S.shard_urls([four[0], f"{folder}/train-{{000002..000003}}.tar"], "k") == [four[0], *four[2:]]
    with pytest.raises(DatasetError, match=r"dataset.shards: .*train-000004.tar does not exist \(and 5 more\)"):
        S.shard_urls(f"{folder}/train-{{000000..000009}}.tar", "dataset.shards")
    assert S.shard_urls(["https://host/a-{0..1}.tar"], "k") == ["https://host/a-0.tar", "https://host/a-1.tar"]
    assert S.sizes_json_count(four) == 4 * PER_SHARD and S.sizes_json_count(["https://host/a.tar"]) is None


def test_every_reader_gets_its_own_shards_and_together_they_read_all(four):
    seen = {}
    for rank in range(2):
        for worker in range(2):
            s = stream(four)
            s.assign(seed=0, rank=rank, world=2, batch=4, steps=4)
            batches = s.slot_batches(rank * 2 + worker, 4)
            seen[rank, worker] = {k for _ in range(4) for k in shard_of(next(batches)[0])}
    assert all(len(shards) == 1 for shards in seen.values())   # 4 shards, 4 readers: one each, cycled
    assert set().union(*seen.values()) == {0, 1, 2, 3}
    with pytest.raises(DatasetError, match="4 shard.* for 2 process.* x 4 worker.*lower dataset.workers"):
        stream(four, workers=4).assign(seed=0, rank=0, world=2, batch=4, steps=4)


def epoch_of(s: ShardStream, epoch: int, first: int = 0) -> list:
    return [(b.clone(), ids) for b, ids in s.epoch_batches(epoch, first, torch.device("cpu"))]


def test_an_epoch_is_fixed_by_seed_and_epoch_and_a_resume_replays_it_to_its_step(four):
    s = stream(four, samples=64, workers=2)
    s.assign(seed=3, rank=0, world=1, batch=4, steps=16)
    one, again, other = epoch_of(s, 1), epoch_of(s, 1), epoch_of(s, 2)
    assert len(one) == 16 and all(b.shape == (4, 3, 8, 8) and ids is None for b, ids in one)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(one, again))
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(one, other))   # reshuffled every epoch
    for first in (1, 5, 15):   # from step `first` on, the same batches as the whole epoch's
        tail = epoch_of(s, 1, first)
        assert len(tail) == 16 - first and all(torch.equal(a, b) for (a, _), (b, _) in zip(one[first:], tail))
    from_two = {k for b, _ in one for k in shard_of(b)}
    assert from_two == {0, 1, 2, 3}


def test_captions_are_tokenized_with_their_images(four):
    from specrep_cli.data.tokenizer import build_tokenizer
    s = stream(four, workers=0)
    tokenizer = build_tokenizer(s.peek()[1], "word")
    assert len(s.peek()[1]) == 4 * PER_SHARD   # every sample: fewer than dataset.peek_samples
    s.caption_ids(tokenizer, 12)
    s.assign(seed=0, rank=0, world=1, batch=8, steps=2)
    for images, ids in epoch_of(s, 1):
        words = tokenizer.decode(ids)
        assert [int(w.split("shard ")[1].split()[0]) for w in words] == shard_of(images)


def a_shard(path: Path, members: list) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_bad_samples_are_counted_and_named_or_stop_and_a_truncated_tar_counts_once(four, tmp_path):
    good = Path(four[0]).read_bytes()
    with tarfile.open(four[0]) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    png = next(d for n, d in members if n.endswith(".png"))
    bad = a_shard(tmp_path / "bad.tar", [("a.png", png), ("a.txt", b"a caption"), ("b.png", png),   # b: no .txt
                                         ("c.png", b"not a png"), ("c.txt", b"x")])                 # c: corrupt
    how = S.Reading(8, "stretch", captions=True, labels=False, stop=False)
    counted = S.Bad()
    assert len(list(S.shard_samples(bad, how, counted))) == 1 and counted.count == 2
    assert counted.named[0].endswith("bad.tar: b: no .txt") and "c: corrupt image .png" in counted.named[1]
    views = S.Reading(8, "stretch", captions=False, labels=False, stop=False)   # two views need no caption
    assert len(list(S.shard_samples(bad, views, S.Bad()))) == 2
    for cut in (len(good) // 3, len(good) // 2 + 700, len(good) - 5000):
        (tmp_path / "cut.tar").write_bytes(good[:cut])
        counted = S.Bad()
        read = list(S.shard_samples(str(tmp_path / "cut.tar"), how, counted))
        assert 0 < len(read) < PER_SHARD and counted.count == 1 and "truncated" in counted.named[0]
    with pytest.raises(DatasetError, match=r"bad sample in .*bad.tar: b: no .txt; .*dataset.bad_samples=skip"):
        list(S.shard_samples(bad, S.Reading(8, "stretch", True, False, stop=True), S.Bad()))


def test_an_evaluation_set_reads_every_sample_with_its_class_and_caption(four):
    images, labels, texts, bad = S.read_shards(four[:2], S.Reading(8, "stretch", True, True, False))
    assert images.shape == (2 * PER_SHARD, 3, 8, 8) and bad.count == 0
    assert labels.tolist() == [j % 2 for j in range(PER_SHARD)] * 2
    assert texts[PER_SHARD] == "a photo of a class0 from shard 1" and shard_of(images)[PER_SHARD] == 1


def test_the_buffer_shuffles_a_permutation():
    import random
    out = list(buffer_shuffle(iter(range(100)), 10, random.Random(0)))
    assert sorted(out) == list(range(100)) and out != list(range(100))
    assert list(buffer_shuffle(iter(range(5)), 1, random.Random(0))) == list(range(5))


@pytest.mark.skipif(__import__("shutil").which("curl") is None,
                    reason="webdataset opens http(s) URLs with curl, which this machine lacks")
def test_urls_and_pipes_stream_as_local_shards_do(four):
    import functools
    import http.server
    import socketserver
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = socketserver.TCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=Path(four[0]).parent))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        how = S.Reading(8, "stretch", captions=True, labels=True, stop=False)
        urls = [*S.shard_urls(f"{base}/train-{{000000..000001}}.tar", "k"), f"pipe:cat {four[2]}"]
        bad = S.Bad()
        read = [s for url in urls for s in S.shard_samples(url, how, bad)]
        assert len(read) == 3 * PER_SHARD and bad.count == 0
        assert [s[0][0, 0, 0] // 10 for s in read[::PER_SHARD]] == [0, 1, 2]
        assert list(S.shard_samples(f"{base}/nothing.tar", how, bad)) == [] and "is the URL reachable" in bad.named[0]
    finally:
        server.shutdown()


def test_the_settings_a_user_gets_wrong_are_one_line(four, tmp_path):
    from specrep_cli import config
    from specrep_cli.data.datasets import load_dataset
    from specrep_cli.errors import ConfigError
    folder = Path(four[0]).parent
    shards = f"dataset.shards='{folder}/train-{{000000..000003}}.tar'"
    with pytest.raises(ConfigError, match="needs one evaluation set: dataset.eval_shards=.* or dataset.eval_root="):
        config.compose_config("train", ["dataset=webdataset", shards])
    with pytest.raises(ConfigError, match="drop dataset.subset"):
        config.compose_config("train", ["dataset=webdataset", shards, "dataset.eval_root=x", "dataset.subset=10"])
    cfg = config.compose_config("train", ["dataset=webdataset", shards, f"dataset.eval_shards={four[0]}",
                                          f"dataset.classes={tmp_path / 'none.txt'}", "dataset.image_size=8"])
    with pytest.raises(DatasetError, match=r"dataset.classes=.*none.txt: cannot read it"):
        load_dataset(cfg.dataset)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "a.tar").write_bytes(Path(four[0]).read_bytes())
    with pytest.raises(DatasetError, match="dataset.samples_per_epoch is needed .*sizes.json"):
        ShardStream.of(WebDatasetConfig(shards=str(bare / "a.tar"), eval_root="x"))
    given = WebDatasetConfig(shards=str(bare / "a.tar"), eval_root="x", samples_per_epoch=5)
    assert ShardStream.of(given).shape[0] == 5


def test_a_pass_never_repeats_a_sample_and_a_bad_one_met_again_counts_once(four, tmp_path):
    s = stream(four[:1], samples=32, buffer=1000)   # one shard of 8 under a buffer of 1,000
    s.assign(seed=0, rank=0, world=1, batch=4, steps=8)
    bad = S.Bad()
    samples = s.slot_samples(0, 1, bad)
    first = [next(samples)[0] for _ in range(PER_SHARD)]
    assert sorted(int(a[0, 0, 1]) for a in first) == list(range(PER_SHARD))   # the shard's 8, each once
    raw = Path(four[1]).read_bytes()
    (tmp_path / "cut.tar").write_bytes(raw[:len(raw) // 2])
    how = S.Reading(8, "stretch", captions=True, labels=False, stop=False)
    for _ in range(3):   # a reader cycling its shards meets the same cut again
        list(S.shard_samples(str(tmp_path / "cut.tar"), how, bad))
    assert bad.count == 1 and bad.named[0].startswith(f"{tmp_path / 'cut.tar'}: truncated")


def test_a_folder_or_a_glob_for_shards_is_named_for_what_it_is(four):
    folder = Path(four[0]).parent
    with pytest.raises(DatasetError, match="is a folder: name its shard files"):
        S.shard_urls(str(folder), "dataset.shards")
    with pytest.raises(DatasetError, match="brace patterns .*, not globs"):
        S.shard_urls(f"{folder}/*.tar", "dataset.shards")
