"""An image folder as one file, and back: how the real CIFAR-10 travels to a lent GPU machine.

    python benchmarks/cifar_pack.py pack ../shared/data/cifar10-jpeg .device/cifar10-jpeg.npz
    python benchmarks/cifar_pack.py unpack .device/cifar10-jpeg.npz /tmp/cifar10-jpeg

The files' bytes are stored as they are (the 60,000 CIFAR-10 JPEGs are 55 MB; as files they take
236 MB of disk), with their paths relative to the folder (UTF-8, NUL-separated: 1.25 MB for CIFAR-10's,
where a fixed-width unicode array took 6 MB of the device tool's 64 MiB), in an uncompressed .npz:
unpacking gives back the same files, byte for byte.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def pack(folder: Path, out: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    blobs = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    names = "\0".join(str(p.relative_to(folder)) for p in files).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, data=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             names=np.frombuffer(names, dtype=np.uint8))
    print(f"packed {len(files)} files ({offsets[-1] / 1e6:.1f} MB) from {folder} into {out}")


def unpack(pack_file: Path, folder: Path) -> None:
    saved = np.load(pack_file)
    data, offsets = saved["data"], saved["offsets"]
    names = saved["names"].tobytes().decode().split("\0")
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[offsets[i]:offsets[i + 1]].tobytes())
    print(f"unpacked {len(names)} files into {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("source", type=Path, help="pack: the image folder; unpack: the .npz")
    parser.add_argument("target", type=Path, help="pack: the .npz to write; unpack: the folder to fill")
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.source, args.target)


if __name__ == "__main__":
    main()
