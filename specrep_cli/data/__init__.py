"""conf/dataset and conf/augmentation: datasets as uint8 images on the device (or streamed), the
batched on-device augmentation, and what a training step's two inputs are.

    datasets.py   load_dataset(cfg, device) -> ImageData (splits.py): checked, normalised, placed
    loaders.py    one loader per format (shapes, cifar10/100, stl10, imagefolder, image_text)
    files.py      image files: listing, decoding, the decode cache, ImageFiles (streaming)
    batches.py    batches(images, order, batch_size, device): the one way to read a split
    augment.py    make_views(images, cfg, mean, std): both views of a batch, on the device
    pairs.py      ViewPairs / TextPairs: (x, y) of a step from a uint8 batch
    shapes.py, captions.py, tokenizer.py: the built-in dataset, its captions, the text tokenizer
"""
from .batches import batches
from .datasets import load_dataset
from .splits import ImageData

__all__ = ["ImageData", "batches", "load_dataset"]
