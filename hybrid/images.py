"""Turn whatever a user hands us (path, bytes, PIL image, numpy array) into one RGB PIL image.

Every reader, the pipeline and the app go through `load_image` (pixels) or `read_header` (size only), so
bad input gets the same clear error everywhere: `ImageError`, naming the file and the problem. Every
Pillow failure becomes an `ImageError`, decompression bombs included, and so does any image over
`MAX_PIXELS`, refused from its header before a pixel is decoded.
"""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import ExifTags, Image, ImageOps

from hybrid.limits import IMAGE_FORMATS, MAX_EXIF_BYTES, MAX_EXIF_TAGS, MAX_JPEG_SCANS, MAX_PIXELS

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that is not a usable image; the message names the source and the problem."""


class ImageTooLarge(ImageError):
    """An image over MAX_PIXELS (from its header, or as decoded)."""


def pil_open(fp) -> Image.Image:
    """PIL's own `Image.open`. Importing Ultralytics replaces `Image.open` with a wrapper that, on a file
    PIL cannot identify, pip-installs `pi-heif` (offline: raises ModuleNotFoundError); we want the
    plain `UnidentifiedImageError` instead, so bad uploads get a clear `ImageError` and no install."""
    opener = Image.open
    module = getattr(opener, "__module__", "") or ""
    if module.startswith("ultralytics"):
        opener = getattr(sys.modules.get(module), "_image_open", opener)
    return opener(fp, formats=IMAGE_FORMATS)


def _open(source: Union[str, Path, bytes], name: str) -> Image.Image:
    """`pil_open` with every failure as `ImageError`. Pillow's decompression-bomb guard raises
    `DecompressionBombError` (neither OSError nor ValueError) over ~179 MP and only warns over ~89 MP;
    both are refused here, the warning turned into an error so that nothing is printed. What costs more to
    read than its size says is refused first: a TIFF whose directory is over the EXIF budgets (Pillow reads it
    while opening), then an EXIF block over them, a JPEG of more than MAX_JPEG_SCANS scans."""
    try:
        head = _head(source)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            _check_directory(_head(source, 16 * MAX_EXIF_BYTES), name)  # its first directory
        # catch_warnings is process-wide: a thread racing it may print the warning, but the image is still
        # refused (by _check_size, as MAX_PIXELS is below Pillow's warning threshold).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = pil_open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        bomb = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageTooLarge(
            f"{name}: image is over {bomb:.0f} megapixels (a decompression bomb?); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels, resize it first"
        ) from None
    except Exception as error:  # Pillow's plugins raise many types (OSError, SyntaxError, struct.error...)
        raise ImageError(f"{name}: not a readable image ({error})") from None
    try:
        _check_exif(opened, name)
        if opened.format in ("JPEG", "MPO") and _count(source, b"\xff\xda") > MAX_JPEG_SCANS:
            raise ImageError(f"{name}: a JPEG of more than {MAX_JPEG_SCANS} scans (each decodes the whole image again)")
    except BaseException:
        opened.close()
        raise
    return opened


def _head(source: Union[str, Path, bytes], size: int = 16) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    with open(source, "rb") as file:
        return file.read(size)


def _count(source: Union[str, Path, bytes], marker: bytes, block: int = 1 << 20) -> int:
    """How often `marker` (2 bytes) occurs in the file or bytes, read a block at a time."""
    if isinstance(source, bytes):
        return source.count(marker)
    found, tail = 0, b""
    with open(source, "rb") as file:
        while chunk := file.read(block):
            data = tail + chunk
            found += data.count(marker)
            tail = data[-1:] if data[-1:] == marker[:1] else b""
    return found


# bytes per value of each TIFF field type (unknown types: the largest)
_TIFF_TYPE_BYTES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}


def _check_directory(block: bytes, name: str) -> None:
    """Refuse a TIFF structure (a TIFF file, an EXIF block) whose first directory has more than MAX_EXIF_TAGS
    tags or whose values take more than MAX_EXIF_BYTES: Pillow copies each tag's value as it reads them."""
    import struct

    if block[:6] == b"Exif\x00\x00":
        block = block[6:]
    order = {b"II": "<", b"MM": ">"}.get(block[:2])
    if order is None or len(block) < 8:
        return  # not TIFF-structured: Pillow says what it is
    big = struct.unpack(order + "H", block[2:4])[0] == 43  # BigTIFF: 8-byte counts and offsets
    try:
        if big:
            offset = struct.unpack(order + "Q", block[8:16])[0]
            tags = struct.unpack(order + "Q", block[offset : offset + 8])[0]
            entries, size, start = 20, 8, offset + 8
        else:
            offset = struct.unpack(order + "I", block[4:8])[0]
            tags = struct.unpack(order + "H", block[offset : offset + 2])[0]
            entries, size, start = 12, 4, offset + 2
    except struct.error:
        return  # a directory past what we read: Pillow fails on it
    if tags > MAX_EXIF_TAGS:
        raise ImageError(f"{name}: an image directory of {tags} tags (at most {MAX_EXIF_TAGS})")
    total = 0
    for number in range(tags):
        entry = block[start + number * entries : start + (number + 1) * entries]
        if len(entry) < entries:
            break
        kind = struct.unpack(order + "H", entry[2:4])[0]
        count = struct.unpack(order + ("Q" if big else "I"), entry[4 : 4 + size])[0]
        total += count * _TIFF_TYPE_BYTES.get(kind, 8)
    if total > MAX_EXIF_BYTES:
        raise ImageError(f"{name}: image metadata of {total / 1e6:.1f} MB (at most {MAX_EXIF_BYTES / 1e6:.0f} MB)")


def _check_exif(opened: Image.Image, name: str) -> None:
    """Refuse an EXIF block over the budgets before anything parses it (`getexif`, `exif_transpose`)."""
    exif = opened.info.get("exif")
    if isinstance(exif, (bytes, bytearray)):
        _check_directory(bytes(exif), name)


def _orientation(opened: Image.Image) -> int:
    """The EXIF orientation (1 when there is none), read without decoding: a PNG's `getexif` loads the whole
    image when its eXIf chunk is not ahead of the pixels, so a PNG's is read from what its header held."""
    if opened.format == "PNG" and "exif" not in opened.info:
        return 1
    orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if isinstance(orientation, int) else 1


def _describe(source: ImageInput) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def _check_size(width: int, height: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: empty image ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels; "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels, resize it first"
        )


def to_rgb(image: Image.Image, in_place: bool = False) -> Image.Image:
    """RGB with EXIF rotation applied; 16-bit and float modes rescaled, transparency put on white.
    An upright RGB image is returned as it is, not copied (a copy of an 800x600 photo costs about as much as
    decoding it): callers that draw on the result copy it first. `in_place`: `image` is ours to change (one we
    opened), so a rotated one is turned upright in place; otherwise in a copy."""
    if in_place:
        ImageOps.exif_transpose(image, in_place=True)
    elif image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # A fixed scale keeps brightness (a per-image min-max stretch would brighten dark photos):
        # 16-bit integers /257, floats in [0, 1] *255; only other ranges are stretched to 0..255.
        array = np.asarray(image)  # the stored 2-4 bytes a pixel, not a float64 copy (a 50 MP one: 400 MB each)
        lo, hi = float(array.min()), float(array.max())
        if image.mode.startswith("I") and lo >= 0 and hi <= 65535:
            offset, scale = 0.0, 1 / 257.0
        elif image.mode == "F" and lo >= 0 and hi <= 1.0:
            offset, scale = 0.0, 255.0
        else:
            offset, scale = lo, (255.0 / (hi - lo) if hi > lo else 0.0)
        image = Image.fromarray(_to_8_bits(array, offset, scale), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _to_8_bits(array: np.ndarray, offset: float, scale: float, rows: int = 512) -> np.ndarray:
    """round((array - offset) * scale) clipped to 0..255 as uint8, a block of rows at a time in float32: the
    float copies stay a few MB whatever the image's size."""
    out = np.empty(array.shape, np.uint8)
    for top in range(0, array.shape[0], rows):
        block = (array[top : top + rows].astype(np.float32) - np.float32(offset)) * np.float32(scale)
        out[top : top + rows] = np.clip(np.rint(block), 0, 255)
    return out


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """uint8 as is; uint16 /257; floats in [0, 1] *255 (other floats are taken as 0..255); bool -> 0/255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ImageError(f"{name}: unsupported array dtype {array.dtype}")
    finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if np.issubdtype(array.dtype, np.floating) and finite.size and finite.min() >= 0 and finite.max() <= 1.0:
        finite = finite * 255.0
    return np.clip(np.round(finite), 0, 255).astype(np.uint8)


def load_image(source: ImageInput) -> Image.Image:
    """Open and fully decode `source` as an RGB image, or raise `ImageError` saying why not."""
    name = _describe(source)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise ImageError(f"{name}: expected an HxW or HxWx{{1,3,4}} array, got shape {source.shape}")
        _check_size(source.shape[1], source.shape[0], name)
        array = _to_uint8(source, name)
        return to_rgb(Image.fromarray(array.squeeze(2) if array.ndim == 3 and array.shape[2] == 1 else array))
    if isinstance(source, Image.Image):
        _check_size(*source.size, name)
        try:
            source.load()  # a lazily opened PIL image decodes here
            return to_rgb(source)
        except Exception as error:
            raise ImageError(f"{name}: corrupt or truncated image ({error})") from None
    opened = _open(source, name)
    with opened:
        _check_size(*opened.size, name)
        try:
            opened.load()
        except Exception as error:  # a bad stream fails here, with any of Pillow's error types
            raise ImageError(f"{name}: corrupt or truncated image ({error})") from None
        _check_size(*opened.size, name)  # as decoded
        _check_exif(opened, name)  # a PNG's eXIf after its pixels is read with them
        try:
            return to_rgb(opened, in_place=True)
        except Exception as error:  # a bad EXIF block
            raise ImageError(f"{name}: corrupt or truncated image ({error})") from None


def rgb_array(source: ImageInput) -> np.ndarray:
    """`source` as an HxWx3 uint8 RGB array: such an array as it is (size checked; no copy), else `load_image`."""
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
        _check_size(source.shape[1], source.shape[0], _describe(source))
        return source
    return np.asarray(load_image(source))


@dataclass(frozen=True)
class Header:
    """What an image's header says: upright size (EXIF rotation applied), stored size, mode, orientation."""

    width: int
    height: int
    stored: tuple[int, int]
    mode: str
    orientation: int


def read_header(source: Union[str, Path, bytes], name: str = "") -> Header:
    """The header of an image file or bytes, without decoding the pixels; raises `ImageError`
    (unreadable, or over the decompression-bomb limit)."""
    name = name or _describe(source)
    with _open(source, name) as opened:
        stored, mode = opened.size, opened.mode
        _check_size(*stored, name)
        try:
            orientation = _orientation(opened)
        except Exception as error:  # a malformed EXIF block
            raise ImageError(f"{name}: not a readable image ({error})") from None
    width, height = (stored[1], stored[0]) if orientation in (5, 6, 7, 8) else stored
    return Header(width, height, stored, mode, orientation)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only, EXIF rotation applied; raises `ImageError`."""
    header = read_header(path)
    return header.width, header.height
