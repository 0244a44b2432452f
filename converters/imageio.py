"""Read source images into 8-bit grayscale and encode them for a record.

The stored form is 8-bit grayscale (one channel), as the NIH files are. Other sources are
converted deterministically, and the tests pin each rule:

- `L` (8-bit gray): unchanged. With png encoding and no resize the source PNG's bytes are
  stored as they are (no decode, no re-encode: conversion runs at file-copy speed); its
  chunk CRCs are checked so that a truncated file is caught, not copied.
- `RGB`, `P` (palette), `1`, `CMYK`, `YCbCr`: PIL's `convert("L")`, the ITU-R 601-2 luma
  L = R*299/1000 + G*587/1000 + B*114/1000 (palettes go through their RGB colours).
- `RGBA`, `LA`, `PA`: the alpha channel is DROPPED (not composited): the colour channels
  are converted as above. Radiographs carry no meaningful transparency, and dropping it
  keeps every stored pixel equal to the source's visible gray value when alpha is opaque.
- 16-bit gray (`I;16`, `I;16B`, `I;16L`, and `I` clipped to 0..65535): value >> 8, i.e. the
  high byte, a fixed scale that does not depend on the image's own range.
- Anything else (`F`, 32-bit float) is refused with a reason and the image is skipped.

`--resize N` stores a square N x N image (the models' input shape; the NIH images are
square) resized with PIL's antialiased bilinear filter after the grayscale conversion.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ENCODINGS: tuple[str, ...] = ("png", "jpeg", "raw")
_LUMA_MODES = frozenset({"RGB", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"})
_ALPHA_MODES = {"RGBA": "RGB", "RGBa": "RGB", "LA": "L", "La": "L", "PA": "RGB"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


class ImageReadError(Exception):
    """A source image that cannot be stored: missing, unreadable, truncated or unsupported.

    The message is the reason recorded in the manifest's `skipped` list.
    """


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a record: encoded bytes plus the stored shape."""

    data: bytes
    height: int
    width: int
    channels: int
    source_bytes: int  # bytes read from the source file
    copied: bool  # True when the source PNG bytes were stored unchanged
    source_format: str = "PNG"  # the format PIL found in the file, whatever its name says


def to_grayscale(image: Image.Image) -> Image.Image:
    """The 8-bit grayscale (`L`) form of `image`, by the rules in the module docstring."""
    mode = image.mode
    if mode == "L":
        return image
    if mode in _ALPHA_MODES:
        without_alpha = (
            image.convert("RGBA").convert(_ALPHA_MODES[mode])
            if mode == "PA"
            else (image.convert(_ALPHA_MODES[mode]))
        )
        return to_grayscale(without_alpha)
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        high_byte = np.clip(values, 0, 0xFFFF) >> 8
        return Image.fromarray(high_byte.astype(np.uint8), mode="L")
    if mode in _LUMA_MODES:
        return image.convert("L")
    raise ImageReadError(f"unsupported image mode {mode!r}")


def encode_gray(image: Image.Image, *, encoding: str, quality: int = 95) -> bytes:
    """Encode an `L` image as png, jpeg (at `quality`) or raw uint8 pixels (row-major)."""
    if image.mode != "L":
        raise ValueError(f"expected an 'L' image, got mode {image.mode!r}")
    if encoding == "raw":
        return image.tobytes()
    buffer = io.BytesIO()
    if encoding == "png":
        image.save(buffer, format="PNG")
    elif encoding == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    return buffer.getvalue()


def _is_plain_gray_png(image: Image.Image) -> bool:
    """8-bit grayscale PNG whose pixels decode to exactly the stored bytes (no 1/2/4-bit)."""
    if image.format != "PNG" or image.mode != "L" or not image.tile:
        return False
    tile_args = image.tile[0][3]
    rawmode = tile_args[0] if isinstance(tile_args, tuple) else tile_args
    return rawmode == "L"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise ImageReadError("file not found") from error
    except OSError as error:
        raise ImageReadError(f"cannot read file: {error.strerror or error}") from error


def load_image(
    path: Path, *, encoding: str = "png", quality: int = 95, resize: int | None = None
) -> EncodedImage:
    """Read `path` and encode it for a record. Raises ImageReadError with the reason."""
    data = _read_bytes(path)
    try:
        image = Image.open(io.BytesIO(data))
        source_format = image.format or "unknown"
        if image.format == "PNG":
            # Walks every chunk's CRC to IEND: catches truncation cheaply, and rejects the
            # same files whether they are copied or re-encoded.
            copy = encoding == "png" and resize is None and _is_plain_gray_png(image)
            width, height = image.size
            image.verify()
            if copy:
                return EncodedImage(data, height, width, 1, len(data), copied=True)
            image = Image.open(io.BytesIO(data))  # verify() leaves the image unusable
        image.load()
        gray = to_grayscale(image)
        if resize is not None:
            gray = gray.resize((resize, resize), Image.Resampling.BILINEAR)
        encoded = encode_gray(gray, encoding=encoding, quality=quality)
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError as error:
        raise ImageReadError("unreadable image: not a recognised image format") from error
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"unreadable image: {type(error).__name__}: {error}") from error
    return EncodedImage(
        encoded, gray.height, gray.width, 1, len(data), copied=False, source_format=source_format
    )
