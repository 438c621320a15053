"""Bad input, each case on files the test writes: corrupt/truncated images, EXIF rotation, odd pixel modes,
boxes outside the image, zero-area boxes, unknown labels, malformed annotation files, missing label files."""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import hybrid.images
from hybrid.crops import FILL, square_crop
from hybrid.data import DataError, build_crop_dataset, dataset_stats, read_dataset, write_yolo_dataset
from hybrid.data.records import HandBox
from hybrid.images import ImageError, image_size, load_image, read_header

RED = (220, 20, 20)


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def voc_xml(filename: str, size: tuple[int, int], objects: list[tuple[str, tuple]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    return (
        f"<annotation><folder>elsewhere</folder><filename>{filename}</filename><path>/Users/x/{filename}</path>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{body}</annotation>"
    )


def write_voc(folder: Path, stem: str, image_bytes: bytes, size, objects) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.jpg").write_bytes(image_bytes)
    (folder / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", size, objects))
    return folder / f"{stem}.jpg"


def write_yolo(root: Path, names, labels: dict[str, str], split="train", size=(40, 60)) -> None:
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "labels").mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "/nowhere/train/images", "names": names}))
    for stem, text in labels.items():
        (root / split / "images" / f"{stem}.jpg").write_bytes(jpeg_bytes(Image.new("RGB", size, "white")))
        if text is not None:
            (root / split / "labels" / f"{stem}.txt").write_text(text)


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side pixels (20000: 400 megapixels) that is a few KB on disk: the
    decompression bomb. Written chunk by chunk, so making it costs ~0.1 s and no memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (side + 7) // 8)  # filter byte + packed black pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# --- decompression bombs -------------------------------------------------------------------------


def test_decompression_bomb_is_an_image_error_naming_the_file(tmp_path):
    """Hostile: over ~179 MP Pillow raises DecompressionBombError, which is neither OSError nor ValueError;
    every entry point (path, bytes, header-only) must turn it into ImageError, and readers into DataError."""
    (tmp_path / "five").mkdir()
    bomb = bomb_png(tmp_path / "five" / "bomb.png")
    assert bomb.stat().st_size < 100_000
    for call in (load_image, image_size, read_header):
        with pytest.raises(ImageError, match=r"bomb\.png: image is over \d+ megapixels .*limit is 50 megapixels"):
            call(bomb)
    data = bomb.read_bytes()
    with pytest.raises(ImageError, match="image is over"):
        load_image(data)
    with pytest.raises(DataError, match=r"bomb\.png: image is over"):
        read_dataset(tmp_path, format="imagefolder")
    bad: list[str] = []
    Image.new("RGB", (8, 8)).save(tmp_path / "five" / "fine.png")
    records = read_dataset(tmp_path, format="imagefolder", bad_images=bad)
    assert [r.name for r in records] == ["fine.png"]
    assert len(bad) == 1
    assert "bomb.png" in bad[0]


def test_bomb_warning_range_is_refused_without_a_warning(tmp_path):
    """Hostile: between ~89 and ~179 MP Pillow only *warns* (DecompressionBombWarning, a RuntimeWarning);
    under `python -W error` that warning is raised instead, and it is no ImageError. Both ways the image
    must be refused with ImageError, and nothing printed."""
    bomb = bomb_png(tmp_path / "warn.png", side=11000)  # 121 megapixels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        with pytest.raises(ImageError, match=r"warn\.png: .*megapixels"):
            load_image(bomb)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in (load_image, image_size):
            with pytest.raises(ImageError, match=r"warn\.png: .*megapixels"):
                call(bomb)


def test_lazily_opened_broken_pil_image_is_an_image_error(tmp_path):
    """Hostile: a PIL image handed over unopened decodes inside load_image; its OSError must become ImageError."""
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = jpeg_bytes(Image.fromarray(noise))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.jpg") as lazy:
        with pytest.raises(ImageError, match="corrupt or truncated"):
            load_image(lazy)


# --- corrupt and truncated images --------------------------------------------------------------


def test_corrupt_jpeg_is_an_error_naming_the_file(tmp_path):
    import ultralytics  # noqa: F401  its PIL patch would pip-install pi-heif on unknown files; we must not reach it

    write_voc(tmp_path / "train", "broken", b"\xff\xd8 this is not a jpeg", (10, 10), [("a", (1, 1, 5, 5))])
    with pytest.raises(DataError, match=r"broken\.jpg: not a readable image"):
        read_dataset(tmp_path, format="voc")
    with pytest.raises(ImageError, match=r"broken\.jpg: not a readable image"):
        load_image(tmp_path / "train" / "broken.jpg")
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.jpg")


def test_truncated_jpeg_fails_at_decode_naming_the_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    data = jpeg_bytes(Image.fromarray(noise))
    write_voc(tmp_path / "train", "cut", data[: len(data) // 2], (160, 120), [("a", (10, 10, 50, 50))])
    records = read_dataset(tmp_path)  # the header is intact: reading annotations works
    assert records[0].width == 160
    with pytest.raises(ImageError, match=r"cut\.jpg: corrupt or truncated"):
        records[0].load()
    with pytest.raises(ImageError, match=r"cut\.jpg"):
        build_crop_dataset(records)


# --- EXIF rotation -----------------------------------------------------------------------------


def rotated_photo() -> tuple[bytes, Image.Image]:
    """A JPEG stored as 60x40 with EXIF orientation 6, whose upright view is 40x60 with a red block
    at (5, 10)-(15, 30)."""
    upright = Image.new("RGB", (40, 60), "white")
    upright.paste(Image.new("RGB", (10, 20), RED), (5, 10))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 displays it rotated back 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(stored, exif=exif), upright


def test_exif_rotated_photo_boxes_refer_to_the_upright_image(tmp_path, caplog):
    data, upright = rotated_photo()
    path = write_voc(tmp_path / "train", "phone", data, (40, 60), [("palm", (5, 10, 15, 30))])
    assert Image.open(path).size == (60, 40)
    assert image_size(path) == (40, 60)
    loaded = load_image(path)
    assert loaded.size == (40, 60)
    assert np.abs(np.asarray(loaded, dtype=int) - np.asarray(upright, dtype=int)).mean() < 4
    assert load_image(data).size == (40, 60)
    theirs = Image.open(io.BytesIO(data))  # a caller's own image is turned upright in a copy, never changed
    assert load_image(theirs).size == (40, 60)
    assert theirs.size == (60, 40) and theirs.getexif().get(0x0112) == 6
    (record,) = read_dataset(tmp_path)
    assert (record.width, record.height) == (40, 60)
    assert record.boxes == [HandBox(5, 10, 15, 30, "palm")]
    crop = build_crop_dataset([record])[0]["image"]
    centre = np.asarray(crop)[crop.height // 2, crop.width // 2]
    assert centre[0] > 180
    assert centre[1] < 80  # the crop is centred on the red block
    # a VOC file that declares the stored (raw) size is flagged once
    (tmp_path / "train" / "phone.xml").write_text(voc_xml("phone.jpg", (60, 40), [("palm", (5, 10, 15, 30))]))
    with caplog.at_level(logging.WARNING, logger="hybrid.data.readers"):
        read_dataset(tmp_path)
    assert sum("un-rotated" in r.message for r in caplog.records) == 1


def test_exif_rotated_yolo_label_and_yolo_writer(tmp_path):
    data, _ = rotated_photo()
    root = tmp_path / "yolo"
    write_yolo(root, ["palm"], {})
    (root / "train" / "images" / "phone.jpg").write_bytes(data)
    (root / "train" / "labels" / "phone.txt").write_text("0 0.25 0.333333 0.25 0.333333\n")
    (record,) = read_dataset(root)
    assert record.boxes[0].xyxy == pytest.approx((5, 10, 15, 30), abs=1e-3)
    out = write_yolo_dataset({"train": [record]}, tmp_path / "out")
    written = next((out.parent / "images" / "train").iterdir())
    assert not written.is_symlink()
    assert written.suffix == ".png"
    assert Image.open(written).size == (40, 60)
    (back,) = read_dataset(out.parent)
    assert back.boxes[0].xyxy == pytest.approx((5, 10, 15, 30), abs=1e-3)


# --- pixel modes -------------------------------------------------------------------------------


def test_grayscale_rgba_16bit_and_palette_images(tmp_path):
    folder = tmp_path / "modes" / "fist"
    folder.mkdir(parents=True)
    Image.new("L", (30, 20), 90).save(folder / "gray.jpg")
    rgba = Image.new("RGBA", (30, 20), (0, 0, 255, 0))
    rgba.paste(Image.new("RGBA", (10, 10), (0, 0, 255, 255)), (0, 0))
    rgba.save(folder / "rgba.png")
    Image.fromarray(np.full((20, 30), 100 * 257, np.uint16)).save(folder / "deep.png")
    palette = Image.new("P", (30, 20), 1)
    palette.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    palette.save(folder / "palette.png")
    assert Image.open(folder / "deep.png").mode == "I;16"

    gray, rgba_rgb, deep, pal = (load_image(folder / n) for n in ("gray.jpg", "rgba.png", "deep.png", "palette.png"))
    assert all(im.mode == "RGB" and im.size == (30, 20) for im in (gray, rgba_rgb, deep, pal))
    assert tuple(np.asarray(gray)[5, 5]) == pytest.approx((90, 90, 90), abs=2)
    assert tuple(np.asarray(rgba_rgb)[2, 2]) == (0, 0, 255)
    assert tuple(np.asarray(rgba_rgb)[15, 25]) == (255, 255, 255)
    assert tuple(np.asarray(deep)[5, 5]) == (100, 100, 100)  # 16-bit scaled by 1/257: brightness kept
    assert tuple(np.asarray(pal)[5, 5]) == (10, 200, 10)

    records = read_dataset(tmp_path / "modes")
    assert dataset_stats(records) == {"images": 4, "boxes": 4, "labels": {"fist": 4}}
    crops = build_crop_dataset(records, image_size=16)
    assert all(image.mode == "RGB" and image.size == (16, 16) for image in crops["image"])
    data_yaml = write_yolo_dataset({"train": records}, tmp_path / "yolo")
    written = {p.stem.split("-", 1)[1]: p for p in (data_yaml.parent / "images" / "train").iterdir()}
    assert written["gray"].is_symlink()  # plain 8-bit JPEG: linked
    assert not written["rgba"].is_symlink()
    assert not written["deep"].is_symlink()  # re-encoded as RGB PNG
    assert Image.open(written["deep"]).mode == "RGB"


def test_numpy_inputs():
    assert tuple(np.asarray(load_image(np.full((4, 5), 0.5, np.float32)))[0, 0]) == (128, 128, 128)
    assert tuple(np.asarray(load_image(np.full((4, 5, 3), 65535, np.uint16)))[0, 0]) == (255, 255, 255)
    assert load_image(np.zeros((4, 5, 4), np.uint8)).size == (5, 4)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ImageError, match="empty image"):
        load_image(np.zeros((0, 5, 3), np.uint8))


def test_too_many_pixels(tmp_path, monkeypatch):
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    monkeypatch.setattr(hybrid.images, "MAX_PIXELS", 100)
    with pytest.raises(ImageError, match=r"big\.png: image is 20x20"):
        load_image(tmp_path / "big.png")


# --- boxes -------------------------------------------------------------------------------------


def test_boxes_partly_outside_are_clipped_and_zero_area_dropped_with_one_warning(tmp_path, caplog):
    image = jpeg_bytes(Image.new("RGB", (40, 60), "white"))
    write_voc(
        tmp_path / "v" / "train",
        "a",
        image,
        (40, 60),
        [
            ("palm", (-10, 5, 30, 500)),  # partly outside: clipped
            ("palm", (12, 12, 12, 30)),  # zero width: dropped
            ("fist", (50, 70, 90, 99)),  # entirely outside: zero area after clipping, dropped
        ],
    )
    with caplog.at_level(logging.INFO, logger="hybrid.data.readers"):
        (record,) = read_dataset(tmp_path / "v")
    assert record.boxes == [HandBox(0, 5, 30, 60, "palm")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "dropped 2 zero-area box(es)" in warnings[0].getMessage()
    assert "a.xml" in warnings[0].getMessage()

    write_yolo(tmp_path / "y", ["hand"], {"b": "0 0.95 0.5 0.3 0.2\n0 0.5 0.5 0 0.1\n"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hybrid.data.readers"):
        (record,) = read_dataset(tmp_path / "y")
    assert record.boxes[0].xyxy == pytest.approx((32, 24, 40, 36))
    assert len(record.boxes) == 1
    assert len(caplog.records) == 1
    assert "b.txt:2" in caplog.records[0].getMessage()


def test_yolo_writer_clips_boxes_of_hand_made_records(tmp_path):
    from hybrid.data import ImageRecord

    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(Image.new("RGB", (40, 60), "white")))
    record = ImageRecord(
        image=path,
        boxes=[HandBox(-5, 10, 20, 80, "hand"), HandBox(50, 0, 60, 10, "hand")],
        source="mine",
        width=40,
        height=60,
        name="a.jpg",
    )
    data_yaml = write_yolo_dataset({"train": [record]}, tmp_path / "out")
    (back,) = read_dataset(data_yaml.parent)
    assert len(back.boxes) == 1
    assert back.boxes[0].xyxy == pytest.approx((0, 10, 20, 60), abs=1e-3)


def test_square_crop_bad_boxes():
    image = Image.new("RGB", (40, 30), "white")
    outside = square_crop(image, (100, 100, 120, 120))
    assert set(outside.getdata()) == {FILL}
    assert square_crop(image, (10, 10, 10, 10)).size[0] >= 1
    with pytest.raises(ValueError, match="finite"):
        square_crop(image, (0, 0, float("nan"), 5))
    with pytest.raises(ValueError, match="4 numbers"):
        square_crop(image, (0, 0, 5))


# --- labels and malformed annotation files -----------------------------------------------------


def test_yolo_unknown_class_id_names_file_and_line(tmp_path):
    write_yolo(tmp_path, ["five", "four"], {"x": "1 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(DataError, match=r"x\.txt:2: class id 5 is not one of the dataset's classes 0\.\.1"):
        read_dataset(tmp_path)
    write_yolo(tmp_path, {0: "five", 2: "two"}, {})
    with pytest.raises(DataError, match=r"data\.yaml: 'names' ids must be 0\.\.1"):
        read_dataset(tmp_path)


def test_malformed_yolo_files(tmp_path):
    write_yolo(tmp_path, ["hand"], {"x": "0 0.5 0.5 0.2\n"})
    with pytest.raises(DataError, match=r"x\.txt:1: expected 'class cx cy w h'"):
        read_dataset(tmp_path)
    write_yolo(tmp_path, ["hand"], {"x": "\n0 0.5 half 0.2 0.2\n"})
    with pytest.raises(DataError, match=r"x\.txt:2: not a number"):
        read_dataset(tmp_path)
    write_yolo(tmp_path, ["hand"], {"x": "0.5 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(DataError, match=r"x\.txt:1: class id 0\.5"):
        read_dataset(tmp_path)
    (tmp_path / "data.yaml").write_text("names: [a, b\ntrain: x")
    with pytest.raises(DataError, match=r"data\.yaml: malformed YAML"):
        read_dataset(tmp_path, format="yolo")


def test_missing_label_file_means_no_hands(tmp_path):
    write_yolo(tmp_path / "y", ["hand"], {"with": "0 0.5 0.5 0.5 0.5\n", "without": None, "empty": ""})
    records = {r.name: r for r in read_dataset(tmp_path / "y")}
    assert len(records["with.jpg"].boxes) == 1
    assert records["without.jpg"].boxes == [] == records["empty.jpg"].boxes
    data_yaml = write_yolo_dataset({"train": list(records.values())}, tmp_path / "out")
    assert (data_yaml.parent / "labels" / "train" / "y-without.txt").read_text() == ""


def test_malformed_voc_files(tmp_path):
    folder = tmp_path / "train"
    write_voc(folder, "x", jpeg_bytes(Image.new("RGB", (10, 10))), (10, 10), [("a", (1, 1, 5, 5))])
    xml = folder / "x.xml"
    xml.write_text("<annotation><object><name>a</name>")
    with pytest.raises(DataError, match=r"x\.xml: malformed XML"):
        read_dataset(tmp_path, format="voc")
    xml.write_text("<annotation><object><name>a</name></object></annotation>")
    with pytest.raises(DataError, match=r"x\.xml: <object> #1 \(a\) has no <bndbox>"):
        read_dataset(tmp_path)
    xml.write_text(voc_xml("x.jpg", (10, 10), [("a", (1, "one", 5, 5))]))
    with pytest.raises(DataError, match=r"x\.xml: <object> #1: <ymin> is 'one', expected a number"):
        read_dataset(tmp_path)
    xml.write_text(voc_xml("x.jpg", (10, 10), [("", (1, 1, 5, 5))]))
    with pytest.raises(DataError, match="has no <name>"):
        read_dataset(tmp_path)
    xml.write_text("<config><a/></config>")
    with pytest.raises(DataError, match="not a Pascal VOC annotation"):
        read_dataset(tmp_path)
    (folder / "x.jpg").unlink()
    xml.write_text(voc_xml("x.jpg", (10, 10), [("a", (1, 1, 5, 5))]))
    with pytest.raises(DataError, match=r"x\.xml: no image for this annotation"):
        read_dataset(tmp_path)


def test_hf_unknown_category_id(tmp_path):
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "objects": datasets.List(
                {"bbox": datasets.List(datasets.Value("float32"), length=4), "category": datasets.Value("int64")}
            ),
        }
    )
    # without a ClassLabel the ids stay as names; with one, an id out of range is an error
    rows = {
        "image": [{"bytes": jpeg_bytes(Image.new("RGB", (20, 20))), "path": None}],
        "objects": [[{"bbox": [1, 1, 5, 5], "category": 7}]],
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "plain"))
    assert read_dataset(tmp_path / "plain")[0].boxes == [HandBox(1, 1, 6, 6, "7")]
    features["objects"] = datasets.List(
        {"bbox": datasets.List(datasets.Value("float32"), length=4), "category": datasets.ClassLabel(names=["a", "b"])}
    )
    rows["objects"] = [[{"bbox": [1, 1, 5, 5], "category": 1}]]
    ds = datasets.Dataset.from_dict(rows, features=features)
    table = ds.data.table
    import pyarrow as pa

    bad = table.set_column(
        1,
        "objects",
        pa.array([[{"bbox": [1.0, 1.0, 5.0, 5.0], "category": 7}]], type=table.schema.field("objects").type),
    )
    datasets.Dataset(bad, info=ds.info).save_to_disk(str(tmp_path / "labelled"))
    with pytest.raises(DataError, match=r"label id 7 is not one of the 2 classes"):
        read_dataset(tmp_path / "labelled")


def test_rgb_array_passes_rgb_arrays_through_and_checks_the_rest(tmp_path):
    from hybrid.images import MAX_PIXELS, rgb_array

    frame = np.zeros((48, 64, 3), np.uint8)
    assert rgb_array(frame) is frame  # a video frame or a decoded photo: no copy
    grey = np.zeros((48, 64), np.uint8)
    assert rgb_array(grey).shape == (48, 64, 3)  # anything else goes through load_image
    with pytest.raises(ImageError, match="megapixels"):
        rgb_array(np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (MAX_PIXELS // 1000 + 1, 1000, 3)))


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_a_50_megapixel_16_bit_or_float_image_decodes_within_memory(tmp_path, mode):
    """A 97 KB 16-bit PNG (or float TIFF) of 50 MP once took 1.6 GB to load (float64 copies of every pixel): now
    its 8-bit image is made a block of rows at a time. Measured in a child process, whose peak RSS is its own."""
    import subprocess
    import sys

    path = tmp_path / ("big.png" if mode == "I;16" else "big.tif")
    array = np.zeros((7071, 7071), np.uint16 if mode == "I;16" else np.float32)
    array[::100] = 40_000 if mode == "I;16" else 0.5
    Image.fromarray(array).save(path, **({"compression": "tiff_adobe_deflate"} if mode == "F" else {}))
    code = (
        "import resource, sys\n"
        "from hybrid.images import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image = load_image(sys.argv[1])\n"
        "assert image.getpixel((0, 0)) == (int(sys.argv[2]),) * 3, image.getpixel((0, 0))  # 40000 / 257, 0.5 * 255\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    expected = "156" if mode == "I;16" else "128"
    command = [sys.executable, "-c", code, str(path), expected]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) < 700, f"loading took {done.stdout.strip()} MB more"


def _blp_with(jpeg: bytes) -> bytes:
    """A BLP1 texture whose header says 64x64 and whose one mipmap is `jpeg`, decoded at whatever size it has."""
    import struct

    head = b"BLP1" + struct.pack("<iIIIii", 0, 0, 64, 64, 5, 0)
    return head + struct.pack("<16I", 160, *[0] * 15) + struct.pack("<16I", len(jpeg), *[0] * 15) + bytes(4) + jpeg


def _jpeg(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "case, message",
    [
        ("icon", "cannot identify image file"),  # Pillow decodes an ICO's picture at open, whatever its size
        ("blp", "cannot identify image file"),  # a BLP's JPEG is decoded at its own size, not its header's
        ("exif tags", "an image directory of 2000 tags"),  # every tag's value is copied
        ("exif bytes", r"image metadata of 2\.0 MB"),
        ("tiff tags", "an image directory of 2000 tags"),  # a TIFF's own directory, read while opening
        ("scans", "more than 100 scans"),  # each scan decodes the whole image again
    ],
)
def test_images_that_cost_more_than_their_size_says_are_refused_before_decoding(case, message, tmp_path):
    """Probe of issue 29 (each case loaded on the old code: an ICO or BLP decoded 169 MP from 0.6-2 MB, 65,000
    EXIF tags took 1.3 GB, 5,000 scans of a 49 MP JPEG 27 s). Refused in the header, so the app, the CLI and the
    data readers all refuse them; the budgets are hybrid.limits'."""
    from hybrid.images import read_header
    from tests.hostile import exif_bomb, flat_png, icon, many_scans, png_chunk

    data = {
        "icon": lambda: icon(flat_png(64, 64)),
        "blp": lambda: _blp_with(_jpeg()),
        "exif tags": lambda: flat_png(64, 64, png_chunk(b"eXIf", exif_bomb(2000, 10))),
        "exif bytes": lambda: flat_png(64, 64, png_chunk(b"eXIf", exif_bomb(500, 4000))),
        "tiff tags": lambda: exif_bomb(2000, 10),
        "scans": lambda: many_scans(128, 300),
    }[case]()
    path = tmp_path / "image"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(ImageError, match=message):
            load_image(source)
        with pytest.raises(ImageError, match=message):
            read_header(source)


def test_reading_a_png_header_never_decodes_it(monkeypatch):
    """`read_header` refuses an 85 MP PNG from its header: Pillow's PNG `getexif` loads the pixels when no eXIf
    chunk is ahead of them (on the old code 1.6 s and 353 MB to refuse 9200x9200)."""
    from PIL import PngImagePlugin

    from hybrid.images import ImageTooLarge, read_header
    from tests.hostile import flat_png

    def decoded(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", decoded)
    with pytest.raises(ImageTooLarge, match="9200x9200 = 85 megapixels"):
        read_header(flat_png(9200, 9200))
    assert read_header(flat_png(640, 480)).orientation == 1
