"""What a dataset is once loaded: labelled train and test splits of uint8 images (N, C, H, W), an
optional unlabelled training set, captions, and the normalisation of the training images.

A split is a uint8 tensor (on the training device or the host) or `ImageFiles` (streamed from disk).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from .files import ImageFiles, Images


def take(images: Images, index: Tensor) -> Images:
    """images[index] (int64 indices, sorted): a tensor's rows, or ImageFiles of those files."""
    if isinstance(images, ImageFiles):
        return ImageFiles([images.files[i] for i in index.tolist()], images.size, images.workers)
    return images[index.to(images.device)]


@dataclass
class Captions:
    """The captions of a split: texts[j] describes image image_index[j]; an image may have several."""
    texts: List[str]
    image_index: Tensor    # int64 (M,): the image of each caption

    def subset(self, keep: Tensor) -> "Captions":
        """The captions of images `keep` (sorted indices), re-indexed to the kept images."""
        new_index = torch.full((int(self.image_index.max()) + 1 if len(self.texts) else 0,), -1)
        new_index[keep] = torch.arange(len(keep))
        mapped = new_index[self.image_index]
        chosen = (mapped >= 0).nonzero().squeeze(1)
        return Captions([self.texts[j] for j in chosen.tolist()], mapped[chosen])


@dataclass
class ImageData:
    train_images: Images   # uint8 (N, C, H, W): the probe's train split (and the SSL set, by default)
    train_labels: Tensor   # int64 (N,)
    test_images: Images    # uint8 (M, C, H, W): the probe's test split
    test_labels: Tensor    # int64 (M,)
    classes: List[str]
    unlabelled_images: Images | None = None   # the SSL training set when it is not the train split
    train_captions: Captions | None = None    # image-text pairs (the train split's images)
    test_captions: Captions | None = None
    mean: Tensor | None = None   # (C,) per-channel mean of the SSL training images, in [0, 1]
    std: Tensor | None = None    # (C,) per-channel std of the SSL training images, in [0, 1]
    holdout: float | None = None  # dataset.holdout: the test split is this fraction of the train split, held out

    @property
    def ssl_images(self) -> Images:
        """The images self-supervised training draws its batches from."""
        return self.train_images if self.unlabelled_images is None else self.unlabelled_images

    @property
    def labelled(self) -> bool:
        """Whether there are classes to probe (an unlabelled folder alone, or captions without classes:
        no probe, kNN or zero-shot)."""
        return len(self.classes) > 0

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]
