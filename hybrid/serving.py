"""Serving without PyTorch: the shipped pipeline, written to a folder by a process that has torch and loaded by one
that never imports it.

Importing torch and torchvision costs a process ~650 MB before any model is loaded (the CUDA build, this
project's 2-core VM), and the shipped path does not use them: both networks run in OpenVINO, their pre- and
post-processing in numpy and OpenCV (hybrid.detector.CompiledDetector, hybrid.classifier.CompiledClassifier).
So `load` builds the shipped pipeline in a short-lived child process (`python -m hybrid.serving DETECTOR
CLASSIFIER FOLDER`: `HybridPipeline.from_pretrained`, whose exports and int8 quantization are cached as always),
which writes FOLDER/served.json and links the two network files there; this process then compiles them.

Explanations come from the networks' extra outputs (hybrid.runtime, hybrid.explain). Grad-CAM there is CAM,
which equals it only when the classifier's logits are a linear map of its last stage's mean (timm's ResNets:
global average pooling, then fc): the child checks that on a batch and writes the fc weights. A pipeline that
cannot be served this way (its networks run in PyTorch: a GPU, no OpenVINO; another kind of head; a
preprocessing that needs timm) is refused by the child with the reason (exit status 3), and `load` falls back
to `HybridPipeline.from_pretrained` in this process, which imports torch.

Example:
    >>> pipe = serving.load("models/detector", "models/classifier")   # torch not imported, where it can be
    >>> pipe("photo.jpg")[0]
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np

import hybrid
from hybrid.classifier import CompiledClassifier, numpy_transform
from hybrid.detector import CompiledDetector
from hybrid.files import write_text
from hybrid.pipeline import HybridPipeline
from hybrid.runtime import OpenVinoNetwork, Precision

logger = logging.getLogger(__name__)

MANIFEST = "served.json"
CAM_WEIGHTS = "cam_weights.npy"
FORMAT = 1
NOT_SERVABLE = 3  # the child's exit status for "this pipeline needs PyTorch"


class NotServable(Exception):
    """This pipeline cannot run without PyTorch (the message says why)."""


def write(pipeline: HybridPipeline, folder: Union[str, Path]) -> Path:
    """Write what `read` needs to rebuild `pipeline` without PyTorch into `folder` (created): served.json, the two
    network files (hard links into hybrid.runtime's cache where it can) and the classifier's CAM weights.
    Raises NotServable for a pipeline that cannot be served that way."""
    folder = Path(folder)
    detector, classifier = pipeline.detector, pipeline.classifier
    for network in (detector.network, classifier.network):
        if not isinstance(network, OpenVinoNetwork):
            raise NotServable(f"its networks run in {network.backend} here, not in OpenVINO")
    if numpy_transform(classifier.data_config) is None:
        raise NotServable(f"the classifier's preprocessing needs timm's own transform: {classifier.data_config}")
    cam_weights = linear_cam_weights(classifier)
    if cam_weights is None:
        raise NotServable("the classifier's logits are not a linear map of its last stage's mean (Grad-CAM != CAM)")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / CAM_WEIGHTS, cam_weights)
    manifest = {
        "format": FORMAT,
        "detector": {
            "network": _link(detector.network.path, folder),
            "precision": str(detector.network.precision),
            "names": detector.names,
            "image_size": detector.image_size,
            "conf": detector.conf,
            "iou": detector.iou,
            "stride": detector.stride,
        },
        "classifier": {
            "network": _link(classifier.network.path, folder),
            "precision": str(classifier.network.precision),
            "label_names": classifier.label_names,
            "data_config": _plain(classifier.data_config),
            "cam_weights": CAM_WEIGHTS,
            "outputs": list(classifier.outputs),
            "count_from": classifier.count_from,
        },
        "pipeline": {
            "detector_size": pipeline.detector_size,
            "fast": pipeline.fast,
            "min_confidence": pipeline.min_confidence,
            "detector_threshold": pipeline.detector_threshold,
            "top_k": pipeline.top_k,
        },
    }
    write_text(folder / MANIFEST, json.dumps(manifest, indent=2))  # last: a folder with served.json is complete
    return folder


def read(folder: Union[str, Path], threads: Optional[int] = None) -> HybridPipeline:
    """The pipeline `write` wrote into `folder`, its networks compiled by OpenVINO; imports no torch."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT}")
    det, clf = manifest["detector"], manifest["classifier"]
    detector = CompiledDetector(
        OpenVinoNetwork(folder / det["network"], Precision(det["precision"]), threads),
        det["names"],
        det["image_size"],
        det["conf"],
        det["iou"],
        det["stride"],
    )
    classifier = CompiledClassifier(
        OpenVinoNetwork(folder / clf["network"], Precision(clf["precision"]), threads),
        clf["label_names"],
        clf["data_config"],
        cam_weights=np.load(folder / clf["cam_weights"], allow_pickle=False),
        outputs=clf.get("outputs", ()),
        count_from=clf.get("count_from", "head"),
    )
    return HybridPipeline.compiled(detector, classifier, **manifest["pipeline"])


def load(detector: Union[str, Path], classifier: Union[str, Path]) -> HybridPipeline:
    """The shipped pipeline of two local model folders, without importing torch in this process where it can be
    served that way (see the module doc), else `HybridPipeline.from_pretrained` here. A model the child cannot
    load raises ValueError with the child's one-line reason. The served files stay in a temporary folder until
    this process exits (OpenVINO reads them again for each new input shape)."""
    folder = Path(tempfile.mkdtemp(prefix="hybrid-served-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "hybrid.serving", str(detector), str(classifier), str(folder)]
    child = subprocess.run(command, env=env, capture_output=True, text=True)
    message = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
    if child.returncode == NOT_SERVABLE:
        logger.info("%s; the pipeline runs in this process with PyTorch", message)
        return HybridPipeline.from_pretrained(detector=detector, classifier=classifier)
    if child.returncode != 0:  # e.g. a config.json the checks refuse: the child's one line says which and why
        raise ValueError(f"loading the models failed: {message}")
    return read(folder)


def linear_cam_weights(classifier) -> Optional[np.ndarray]:
    """The classifier head's weights (classes x channels) when its logits are W @ mean(last stage) + b on a
    random batch (then Grad-CAM is CAM with these weights), else None."""
    import torch

    from hybrid.runtime import layer_outputs

    head = classifier.model.get_classifier() if hasattr(classifier.model, "get_classifier") else None
    if not isinstance(head, torch.nn.Linear):
        return None
    batch = torch.randn(2, 3, classifier.image_size, classifier.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, (stage,) = layer_outputs(classifier.model, [classifier.target_layer], batch.to(classifier.device))
        linear = head(stage.float().mean(dim=(2, 3)))
    if stage.dim() != 4 or not torch.allclose(linear, logits.float(), rtol=1e-4, atol=1e-4):
        return None
    return head.weight.detach().float().cpu().numpy()


def _link(path: Path, folder: Path) -> str:
    """Hard-link (else copy) a network file, and an IR's .bin, into `folder`; returns the name there."""
    for source in [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else []):
        target = folder / source.name
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system
            shutil.copyfile(source, target)
    return path.name


def _plain(config: dict) -> dict:
    """timm's data config as JSON values (tuples -> lists)."""
    return json.loads(json.dumps(config))


def _package_root() -> str:
    return str(Path(hybrid.__file__).resolve().parent.parent)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybrid.serving", description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="a detector folder")
    parser.add_argument("classifier", help="a classifier folder")
    parser.add_argument("folder", help="where to write served.json and the network files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        write(HybridPipeline.from_pretrained(detector=args.detector, classifier=args.classifier), args.folder)
    except NotServable as why:
        print(f"not served without PyTorch: {why}", file=sys.stderr)
        return NOT_SERVABLE
    except Exception as error:  # one line for the parent, which shows it
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
