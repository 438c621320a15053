"""Hostile and heavy inputs for the app, made from real data: shared by tests/test_app_security.py and
bench/load_test.py, so the load test sends exactly what the tests check."""

from __future__ import annotations

import io
import tempfile
import threading
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
