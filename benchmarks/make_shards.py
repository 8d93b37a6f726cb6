"""Write open_clip-style webdataset shards (pip install 'specrep[webdataset]') from the built-in shapes or
from an image folder, for dataset=webdataset:

    python benchmarks/make_shards.py --out shards/shapes                      # shapes, 10,000 + 2,000 images
    python benchmarks/make_shards.py --out shards/cifar --root ../data/cifar10-jpeg   # <root>/{train,test}/<class>/*

Each split becomes <out>/<split>-000000.tar, ... of --per-shard samples: `<key>.png|jpg` (an image
folder's files as they are, no re-encoding; shapes as PNG), `<key>.txt` (shapes: the caption
generated from the image's factors; a folder: a template such as "a photo of a {class}." drawn per
image) and `<key>.cls` (the class index); beside them sizes.json (samples per shard, as open_clip
reads) and classes.txt (a class name per line). Then:

    specrep train dataset=webdataset 'dataset.shards="shards/shapes/train-{000000..000009}.tar"' \\
        'dataset.eval_shards="shards/shapes/test-{000000..000001}.tar"' objective=spectral_clip
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

from PIL import Image

from specrep_cli.data import shapes
from specrep_cli.data.captions import shapes_captions
from specrep_cli.data.files import list_image_folder
from specrep_cli.errors import DatasetError

TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "a blurry photo of a {}.", "a close-up photo of a {}.",
             "a photo of the {}.", "a low resolution photo of a {}.", "there is a {} in this image.")
Record = Tuple[bytes, str, str, int]   # image bytes, extension, caption, class


def shapes_records(count: int, seed: int) -> Iterator[Record]:
    """The built-in shapes (dataset=shapes' images for the same seed), PNG, with their generated captions."""
    split = shapes.generate(count, seed=seed, image_size=32)
    texts = shapes_captions(split.factors, seed)
    for image, text, label in zip(split.images, texts, split.labels.tolist()):
        out = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(out, format="PNG")
        yield out.getvalue(), "png", text, label


def folder_records(split_dir: Path, classes: List[str] | None, seed: int) -> Tuple[Iterator[Record], List[str]]:
    """An image folder's files (bytes as they are) in a fixed shuffled order, captioned from TEMPLATES."""
    files, labels, classes = list_image_folder(split_dir, classes)
    rng = random.Random(seed)
    order = list(range(len(files)))
    rng.shuffle(order)

    def records() -> Iterator[Record]:
        for i in order:
            caption = rng.choice(TEMPLATES).format(classes[labels[i]].replace("_", " "))
            yield files[i].read_bytes(), files[i].suffix.lower().lstrip("."), caption, labels[i]

    return records(), classes


def write_split(records: Iterator[Record], out: Path, split: str, per_shard: int) -> dict:
    """<out>/<split>-%06d.tar of per_shard samples each; {shard file name: samples}."""
    from webdataset import TarWriter

    sizes, writer, index = {}, None, 0
    for index, (data, ext, text, label) in enumerate(records):
        if index % per_shard == 0:
            if writer is not None:
                writer.close()
            name = f"{split}-{index // per_shard:06d}.tar"
            writer, sizes[name] = TarWriter(str(out / name)), 0
        writer.write({"__key__": f"{split}{index:08d}", ext: data, "txt": text, "cls": label})
        sizes[name] += 1
    if writer is not None:
        writer.close()
    return sizes


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write open_clip-style webdataset shards from the built-in shapes "
                                                 "or an image folder, for dataset=webdataset.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the shards (created)")
    parser.add_argument("--root", type=Path,
                        help="an image folder with train/ and test/ class folders (default: shapes)")
    parser.add_argument("--num-train", type=int, default=10000, help="shapes: training images")
    parser.add_argument("--num-test", type=int, default=2000, help="shapes: test images")
    parser.add_argument("--per-shard", type=int, default=1000, help="samples per shard")
    parser.add_argument("--seed", type=int, default=0, help="shapes' seed (as dataset.seed); a folder's caption draws")
    args = parser.parse_args(argv)
    try:
        import webdataset  # noqa: F401  (the writer)
    except ImportError:
        print("error: writing shards needs the webdataset library: pip install 'specrep[webdataset]'", file=sys.stderr)
        return 1
    if args.out.is_dir() and any(args.out.glob("*.tar")):
        print(f"error: --out {args.out} already holds shards: choose an empty folder (old shards would stay "
              "beside the new ones)", file=sys.stderr)
        return 1
    try:
        return write(args)
    except DatasetError as err:
        print(f"error: {str(err).replace('dataset.root', '--root')}", file=sys.stderr)
        return 1


def write(args: argparse.Namespace) -> int:
    """Both splits, sizes.json and classes.txt into args.out; what was written, on stdout."""
    if args.root is None:
        classes = list(shapes.CLASSES)
        splits = {"train": shapes_records(args.num_train, args.seed),
                  "test": shapes_records(args.num_test, args.seed + 1_000_003)}
    else:
        train, classes = folder_records(args.root / "train", None, args.seed)
        splits = {"train": train, "test": folder_records(args.root / "test", classes, args.seed + 1)[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, records in splits.items():
        sizes.update(write_split(records, args.out, split, args.per_shard))
    (args.out / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    (args.out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for split in splits:
        shards = sorted(n for n in sizes if n.startswith(f"{split}-"))
        print(f"{split}: {sum(sizes[n] for n in shards):,} samples in {len(shards)} shards: "
              f"{args.out / split}-{{000000..{len(shards) - 1:06d}}}.tar")
    print(f"classes: {args.out / 'classes.txt'} ({len(classes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
