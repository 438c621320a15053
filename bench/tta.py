"""Test-time augmentation, measured on a generalization row's models (issue 14: "test-time flip only if it pays").

    .venv/bin/python -m bench.tta [--row all+long] [--threads 1]

No training: it scores the models `python -m bench.generalize --rows ROW` trained (run that first), in both
directions and in-domain, with:
- the classifier alone on the true boxes' crops, plain vs the mean of the crop's and its mirror's probabilities
  (finger counts do not change in a mirror);
- the whole pipeline with the detector run on more views of each photo, merged by the detector's own NMS:
  the photo at twice the detector's size (small hands look larger) and the photo in the middle of a grey
  canvas twice its size (close-ups look like webcam photos).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bench.generalize import REPO, ROWS, run_folder
from hybrid.crops import FILL

SCORED = [("hands", "roboflow"), ("roboflow", "hands"), ("both", "hands"), ("both", "roboflow")]
VIEWS = {"plain": ["plain"], "+2x size": ["plain", "2x size"], "+zoomed out": ["plain", "zoomed out"]}


class TestTimePipeline:
    """A HybridPipeline whose detector sees `views` of each photo and whose `classify` may average a mirror."""

    def __init__(self, pipe, views: list[str], flip: bool = False) -> None:
        self.pipe, self.views, self.flip = pipe, views, flip

    def __getattr__(self, name: str):
        return getattr(self.pipe, name)

    def classify(self, crops):
        probabilities = self.pipe.classify(crops)
        if self.flip and len(crops):
            probabilities = (probabilities + self.pipe.classify([ImageOps.mirror(c) for c in crops])) / 2
        return probabilities

    def detect(self, images, threshold=None):
        return [self._merged(image, threshold) for image in images]

    def _merged(self, image: Image.Image, threshold):
        import torch
        import torchvision

        found = [d for view in self.views for d in self._seen_in(view, image, threshold)]
        if len(self.views) == 1 or not found:
            return found
        boxes = torch.tensor([d.box for d in found], dtype=torch.float32)
        keep = torchvision.ops.nms(boxes, torch.tensor([d.score for d in found]), self.pipe.detector.iou)
        return [found[i] for i in keep.tolist()]

    def _seen_in(self, view: str, image: Image.Image, threshold):
        """The detections in one view of `image`, in the image's pixels."""
        if view == "plain":
            return self.pipe.detect([image], threshold)[0]
        conf = self.pipe.detector_threshold if threshold is None else threshold
        if view == "2x size":
            size = 2 * self.pipe.detector_size
            return self.pipe.detector.predict(np.asarray(image), conf=conf, image_size=size, rect=self.pipe.fast)
        width, height = image.size  # zoomed out: the photo in the middle of a grey canvas twice its size
        canvas = Image.new("RGB", (2 * width, 2 * height), FILL)
        canvas.paste(image, (width // 2, height // 2))
        shift, limit = np.array([width // 2, height // 2] * 2), np.array([width, height] * 2)
        return [
            replace(d, box=tuple(np.clip(np.array(d.box) - shift, 0, limit).tolist()))
            for d in self.pipe.detect([canvas], threshold)[0]
        ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--row", choices=list(ROWS), default="all+long", help="whose trained models to score")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "generalize", help="bench.generalize's cache")
    args = parser.parse_args(argv)
    import torch

    from bench.machine_info import machine
    from hybrid.data import read_dataset
    from hybrid.data.splits import held_out
    from hybrid.evaluate import evaluate
    from hybrid.pipeline import HybridPipeline

    torch.set_num_threads(args.threads)
    detector_flags, classifier_flags, _ = ROWS[args.row]
    print(f"{machine()}; {args.threads} threads; models of row {args.row}")
    print("| trained on | tested on | views of the photo | hybrid | detector recall | clf, true crops | + mirror |")
    print("|---|---|---|---|---|---|---|")
    for trained_on, tested_on in SCORED:
        folders = [
            run_folder(kind, trained_on, flags, args.work)
            for kind, flags in (("detector", detector_flags), ("classifier", classifier_flags))
        ]
        missing = [str(f) for f in folders if not (f / "config.json").is_file()]
        if missing:
            parser.error(f"not trained yet: {', '.join(missing)}; run python -m bench.generalize --rows {args.row}")
        records = held_out(read_dataset(tested_on, merge_labels=True), folders, "test")
        for name, views in VIEWS.items():
            pipe = HybridPipeline.from_pretrained(*folders, fast=False)
            metrics = evaluate(TestTimePipeline(pipe, views), records, latency_images=0)
            mirror = "-"
            if name == "plain":
                mirrored = evaluate(TestTimePipeline(pipe, views, flip=True), records, latency_images=0)
                mirror = f"{mirrored['classifier_accuracy']:.3f}"
            print(
                f"| {trained_on} | {tested_on} | {name} | {metrics['hybrid_accuracy']:.3f} | "
                f"{metrics['detection_recall']:.3f} | {metrics['classifier_accuracy']:.3f} | {mirror} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
