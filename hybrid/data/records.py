"""The one record type every reader produces: an image with zero or more labelled hand boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from PIL import Image

from hybrid.images import load_image


@dataclass(frozen=True)
class HandBox:
    """One hand: a pixel box (x0, y0, x1, y1) in the upright (EXIF-applied) image, and its gesture."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)


@dataclass
class ImageRecord:
    """An image and its hands. `image` is a path, encoded bytes, or a callable returning a PIL image
    (for Hugging Face datasets); `source` names the dataset, `split` is the upstream split or None."""

    image: Union[Path, bytes, Callable[[], Image.Image]]
    boxes: list[HandBox]
    source: str
    split: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    name: str = ""
    extra: dict = field(default_factory=dict)

    def load(self) -> Image.Image:
        """The decoded RGB image (EXIF rotation applied); raises `hybrid.images.ImageError`."""
        return load_image(self.image() if callable(self.image) else self.image)

    @property
    def labels(self) -> list[str]:
        return [box.label for box in self.boxes]
