"""Tiny datasets written in torchvision's on-disk formats (CIFAR-10/100 pickles, STL-10 binaries).

Each writer returns the images (uint8, N x 3 x H x W) and labels it wrote, so a loader's output can be
compared with what went in.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, Tuple

import numpy as np


def _images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 4, test: int = 6) -> Dict[str, Tuple]:
    """<root>/cifar-10-batches-py/ (5 train batches + test_batch + batches.meta) or
    <root>/cifar-100-python/ (train, test, meta), as torchvision downloads them."""
    hundred = name == "cifar100"
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    classes = [f"class{i}" for i in range(100 if hundred else 10)]
    label_key = "fine_labels" if hundred else "labels"
    written = {"train": ([], []), "test": ([], [])}
    files = [("train", "train", 5 * per_batch)] if hundred else \
        [("train", f"data_batch_{i}", per_batch) for i in range(1, 6)]
    files.append(("test", "test" if hundred else "test_batch", test))
    for seed, (split, filename, n) in enumerate(files):
        x = _images(n, 32, seed)
        y = [(seed * 7 + i) % len(classes) for i in range(n)]
        entry = {"data": x.reshape(n, -1), label_key: y, "filenames": [f"{i}.png" for i in range(n)]}
        if hundred:
            entry["coarse_labels"] = [0] * n
        with (folder / filename).open("wb") as f:
            pickle.dump(entry, f)
        written[split][0].append(x)
        written[split][1].extend(y)
    meta = {"fine_label_names": classes, "coarse_label_names": ["c"]} if hundred else {"label_names": classes}
    with (folder / ("meta" if hundred else "batches.meta")).open("wb") as f:
        pickle.dump(meta, f)
    return {split: (np.concatenate(xs), np.array(ys)) for split, (xs, ys) in written.items()} | {"classes": classes}


def write_stl10(root: Path, train: int = 6, test: int = 4, unlabeled: int = 8) -> Dict[str, Tuple]:
    """<root>/stl10_binary/: {train,test,unlabeled}_X.bin stored column-major like the real files,
    {train,test}_y.bin with labels 1..10, class_names.txt."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    written = {}
    for seed, (split, n) in enumerate((("train", train), ("test", test), ("unlabeled", unlabeled))):
        x = _images(n, 96, 100 + seed)
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        y = np.arange(n) % 10
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
        written[split] = (x, y)
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(classes) + "\n")
    written["classes"] = classes
    return written


def write_image_text(root: Path, per_class: int = 10, captions_per_image: int = 2) -> Path:
    """<root>/captions.tsv and <root>/<class>/<i>.png for classes red and blue; two captions per image."""
    from PIL import Image
    lines = ["# image<TAB>caption"]
    for c, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (20 + i % 3, 24), colour).save(root / c / f"{i}.png")
            lines += [f"{c}/{i}.png\ta {c} square number {i} take {k}" for k in range(captions_per_image)]
    (root / "captions.tsv").write_text("\n".join(lines) + "\n")
    return root


def write_shards(root: Path, split: str = "train", shards: int = 4, per_shard: int = 8, size: int = 8,
                 classes: int = 2) -> list:
    """<root>/<split>-00000k.tar as open_clip's shards (needs the webdataset extra): sample j of shard k
    is a PNG of the colour (10 k, j, 10 k) (so every image tells its shard and itself), a caption
    naming its class and the shard, and its class j % classes; sizes.json and classes.txt beside them.
    Returns the shard paths."""
    import io
    import json

    from PIL import Image
    from webdataset import TarWriter

    root.mkdir(parents=True, exist_ok=True)
    sizes, paths = {}, []
    for k in range(shards):
        path = root / f"{split}-{k:06d}.tar"
        with TarWriter(str(path)) as writer:
            for j in range(per_shard):
                out = io.BytesIO()
                Image.new("RGB", (size, size), (10 * k, j, 10 * k)).save(out, format="PNG")
                writer.write({"__key__": f"{split}{k:03d}{j:04d}", "png": out.getvalue(),
                              "txt": f"a photo of a class{j % classes} from shard {k}", "cls": j % classes})
        sizes[path.name], paths = per_shard, paths + [path]
    known = json.loads((root / "sizes.json").read_text()) if (root / "sizes.json").is_file() else {}
    (root / "sizes.json").write_text(json.dumps({**known, **sizes}))
    (root / "classes.txt").write_text("".join(f"class{c}\n" for c in range(classes)))
    return paths
