"""Hostile and heavy inputs for the app, made from real data: shared by tests/test_app_security.py and
bench/load_test.py, so the load test sends exactly what the tests check."""

from __future__ import annotations

import io
import struct
import tempfile
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
from PIL import Image

PHOTO = "subhih-handsdataset/images/test/16_pic00008.jpg"  # Hands Dataset, Soubhi Hadri, Apache-2.0


def large_photo(data_root: Path, size: tuple[int, int] = (8000, 6000)) -> bytes:
    """A real Hands photo scaled up to 48 megapixels (under the 50 MP budget), as a JPEG."""
    buffer = io.BytesIO()
    Image.open(data_root / PHOTO).convert("RGB").resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG")
    return buffer.getvalue()


def mp4(size: tuple[int, int], frames: int, fps: float = 10.0) -> bytes:
    """An MPEG-4 .mp4 of `frames` grey frames of `size` (width, height), written by OpenCV."""
    import cv2

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        for number in range(frames):
            writer.write(np.full((size[1], size[0], 3), 40 + 10 * number, np.uint8))
        writer.release()
        return path.read_bytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A valid RGB PNG of zeros, any size for a few KB (rows compressed one by one); `extra` chunks before IDAT."""
    row, packer = bytes(1 + 3 * width), zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")
    )


def exif_bomb(tags: int, data: int) -> bytes:
    """An EXIF (TIFF-structured) block of `tags` UNDEFINED tags that all name the same `data` bytes: Pillow
    copies the bytes once per tag (65,000 x 20 KB: 1.3 GB from 800 KB)."""
    offset = 8 + 2 + 12 * tags + 4
    entries = b"".join(struct.pack("<HHII", 0x0200 + i, 7, data, offset) for i in range(tags))
    return b"II*\x00" + struct.pack("<IH", 8, tags) + entries + bytes(4) + b"A" * data


def many_scans(size: int, scans: int) -> bytes:
    """A progressive grey JPEG whose first AC scan is repeated `scans` times (each walks the whole image)."""
    buffer = io.BytesIO()
    Image.new("L", (size, size), 128).save(buffer, "JPEG", progressive=True, quality=90)
    data, position, ac_scan = buffer.getvalue(), 2, None
    while data[position + 1] != 0xD9:
        marker, length = data[position + 1], struct.unpack(">H", data[position + 2 : position + 4])[0]
        end = position + 2 + length
        if marker == 0xDA:  # the scan's entropy-coded data runs to the next marker
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            components = data[position + 4]
            first, approximation = data[position + 5 + 2 * components], data[position + 7 + 2 * components] >> 4
            if first > 0 and approximation == 0 and ac_scan is None:  # a first AC scan
                ac_scan = data[position:end]
        position = end
    return data[:position] + ac_scan * scans + b"\xff\xd9"


def icon(png: bytes) -> bytes:
    """A Windows .ico whose directory says 16x16 and whose one picture is `png` (Pillow decodes it at open)."""
    return struct.pack("<HHHBBBBHHII", 0, 1, 1, 16, 16, 0, 0, 1, 32, len(png), 22) + png


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags), *parts)


def mov_stating(samples: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A MOV of one real MJPEG frame whose `stsz` states `samples` samples of that frame's size (12 bytes, no
    table): FFmpeg builds an index entry for each when it opens the file (60 M: 2.2 GB)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 90, 60)).save(buffer, "JPEG")
    frame, (width, height) = buffer.getvalue(), size
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    duration = min(samples * 100, 2**32 - 1)
    entry = _box(
        b"jpeg",
        bytes(6),
        struct.pack(">H", 1),
        bytes(16),
        struct.pack(">HHII", width, height, 0x480000, 0x480000),
        struct.pack(">IH", 0, 1),
        bytes(32),
        struct.pack(">Hh", 24, -1),
    )

    def movie(offset: int) -> bytes:
        table = _box(
            b"stbl",
            _full_box(b"stsd", 0, struct.pack(">I", 1), entry),
            _full_box(b"stts", 0, struct.pack(">III", 1, samples, 100)),
            _full_box(b"stsc", 0, struct.pack(">IIII", 1, 1, samples, 1)),
            _full_box(b"stsz", 0, struct.pack(">II", len(frame), samples)),
            _full_box(b"stco", 0, struct.pack(">II", 1, offset)),
        )
        media = _box(
            b"mdia",
            _full_box(b"mdhd", 0, struct.pack(">IIII", 0, 0, 1000, duration), struct.pack(">HH", 0x55C4, 0)),
            _full_box(b"hdlr", 0, struct.pack(">I", 0), b"vide", bytes(12), b"VideoHandler\x00"),
            _box(
                b"minf",
                _full_box(b"vmhd", 1, bytes(8)),
                _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1), _full_box(b"url ", 1))),
                table,
            ),
        )
        track = _box(
            b"trak",
            _full_box(
                b"tkhd",
                3,
                struct.pack(">IIIII", 0, 0, 1, 0, duration),
                bytes(16),
                matrix,
                struct.pack(">II", width << 16, height << 16),
            ),
            media,
        )
        header = _full_box(
            b"mvhd",
            0,
            struct.pack(">IIIIIH", 0, 0, 1000, duration, 0x10000, 0x100),
            bytes(10),
            matrix,
            bytes(24),
            struct.pack(">I", 2),
        )
        return _box(b"moov", header, track)

    kind = _box(b"ftyp", b"qt  ", struct.pack(">I", 0), b"qt  ")
    offset = len(kind) + len(movie(0)) + 8
    return kind + movie(offset) + _box(b"mdat", frame)


def playlists(target: str) -> dict[str, bytes]:
    """Files that name another input for FFmpeg to open: an HLS playlist and an ffconcat list of `target`."""
    return {
        "playlist.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n".encode(),
        "list.ffconcat": f"ffconcat version 1.0\nfile '{target}'\n".encode(),
    }


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Sample the process's RSS every 50 ms while the block runs; the list holds the peak (bytes) after it."""
    process, peak, done = psutil.Process(pid), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
