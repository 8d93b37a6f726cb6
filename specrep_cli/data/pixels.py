"""Any PIL image as 8-bit RGB, high bit depths scaled rather than clipped.

    rgb = to_rgb(image)

PIL's convert("RGB") clips 16-bit grayscale (mode I;16, values 0..65535) at 255, so such a PNG
comes out all white. Here 16-bit values v become round(v * 255 / 65535); 32-bit integer images
(mode I) are taken as 16-bit when a value exceeds 255 and as 8-bit otherwise; float images (mode F)
as [0, 1] when no value exceeds 1 and as 0..255 otherwise. 16-bit RGB PNGs arrive as 8-bit RGB
from PIL already (it keeps the high byte of each value).
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
            values = values * (255.0 / 65535.0)
        elif image.mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))   # mode L
    return image.convert("RGB")
