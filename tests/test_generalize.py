"""The generalization levers (issue 14): zoom copies for the detector, photometric augmentation for the
classifier, Sign Language Digits 1-5 as finger counts, and the cross-domain section of the model cards."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybrid.data import read_dataset
from hybrid.data.zoom import quarter_turn, zoom_copies, zoom_copy
from hybrid.training.recipe import ClassifierRecipe, DetectorRecipe, parse_recipe

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def records(data_root):
    hands = [r for r in read_dataset("hands", merge_labels=True) if r.boxes][:12]
    roboflow = [r for r in read_dataset("roboflow", merge_labels=True) if r.boxes][:12]
    return hands + roboflow


def test_zoom_copies_put_whole_hands_at_the_asked_sizes(records, tmp_path):
    span = (0.08, 0.8)
    made = zoom_copies(records, tmp_path, copies=3, span=span, seed=0)
    assert len(made) >= 2 * len(records)  # a copy is dropped only when it would cut a hand
    fractions = []
    for record in made:
        image = Image.open(record.image)
        assert image.size == (record.width, record.height) and image.mode == "RGB"
        assert record.boxes and record.split == "train"
        for box in record.boxes:
            assert 0 <= box.x0 < box.x1 <= record.width + 1e-6 and 0 <= box.y0 < box.y1 <= record.height + 1e-6
        widest = max(b.x1 - b.x0 for b in record.boxes)
        fractions.append(widest / record.width)
    # the widest hand spans the drawn fraction of the copy's width (clipped a little at the image edges)
    assert min(fractions) < 0.15 and max(fractions) > 0.6
    assert all(span[0] * 0.9 <= f <= 1.0 for f in fractions)
    again = zoom_copies(records, tmp_path / "again", copies=3, span=span, seed=0)
    assert [r.boxes for r in again] == [r.boxes for r in made]  # seeded


def test_a_zoom_copy_shows_the_pixels_of_its_box(records):
    record = records[0]
    image, boxes = zoom_copy(record, (0.5, 0.5), random.Random(1))
    (box,) = boxes
    source = record.load().crop(tuple(round(v) for v in record.boxes[0].xyxy))
    copied = image.crop(tuple(round(v) for v in box.xyxy)).resize(source.size)
    difference = np.abs(np.asarray(copied, float) - np.asarray(source, float)).mean()
    assert difference < 12, difference  # the same hand (resampling only), not another part of the photo


@pytest.mark.parametrize("clockwise", [True, False])
def test_a_quarter_turn_moves_the_boxes_with_the_pixels(records, clockwise):
    record = records[0]  # a Hands photo: 800x600, a hand taller than wide
    image = record.load().convert("RGB")
    turned, boxes = quarter_turn(image, record.boxes, clockwise)
    assert turned.size == (image.height, image.width)
    for before, after in zip(record.boxes, boxes):
        assert after.label == before.label
        assert (after.x1 - after.x0, after.y1 - after.y0) == pytest.approx(
            (before.y1 - before.y0, before.x1 - before.x0)
        )
        hand = image.crop(tuple(round(v) for v in before.xyxy))
        hand = hand.transpose(Image.Transpose.ROTATE_270 if clockwise else Image.Transpose.ROTATE_90)
        assert np.array_equal(np.asarray(turned.crop(tuple(round(v) for v in after.xyxy))), np.asarray(hand))


def test_zoom_turn_turns_that_share_of_the_copies_and_nothing_when_off(records, tmp_path):
    hands = records[:12]  # Hands photos: every hand points up, its box taller than wide
    assert all(max(b.y1 - b.y0 for b in r.boxes) > max(b.x1 - b.x0 for b in r.boxes) for r in hands)

    def sideways(copies):
        return sum(max(b.x1 - b.x0 for b in r.boxes) > max(b.y1 - b.y0 for b in r.boxes) for r in copies) / len(copies)

    assert sideways(zoom_copies(hands, tmp_path / "off", copies=2, span=(0.08, 0.8), seed=0)) == 0
    turned = zoom_copies(hands, tmp_path / "turned", copies=2, span=(0.08, 0.8), seed=0, turn=0.5)
    assert 0.2 < sideways(turned) < 0.8  # about half the copies show the hands pointing sideways
    for record in turned:
        assert Image.open(record.image).size == (record.width, record.height)
        for box in record.boxes:
            assert 0 <= box.x0 < box.x1 <= record.width + 1e-6 and 0 <= box.y0 < box.y1 <= record.height + 1e-6


def test_zoom_photometric_greys_or_blurs_that_share_of_the_copies_and_keeps_their_geometry(records, tmp_path):
    plain = zoom_copies(records, tmp_path / "plain", copies=2, span=(0.08, 0.8), seed=0)
    looks = zoom_copies(records, tmp_path / "looks", copies=2, span=(0.08, 0.8), seed=0, photometric=0.5)
    assert [(r.boxes, r.width, r.height) for r in looks] == [(r.boxes, r.width, r.height) for r in plain]
    grey = blurred = 0
    for before, after in zip(plain, looks):
        a, b = (np.asarray(Image.open(r.image), float) for r in (before, after))
        if np.abs(a - b).mean() < 0.5:  # a plain copy (the same JPEG quality: the same pixels)
            continue
        if np.abs(b - b.mean(axis=2, keepdims=True)).max() < 8:  # no colour left (JPEG leaves a little)
            grey += 1
        else:
            assert np.abs(np.diff(b, axis=1)).mean() < 0.9 * np.abs(np.diff(a, axis=1)).mean(), after.image
            blurred += 1
    assert grey >= 4 and blurred >= 4 and grey + blurred <= 0.8 * len(plain)


def test_sign_digits_counts_is_asl_one_to_five_as_finger_counts(data_root):
    records = read_dataset("sign-digits-counts", merge_labels=True)
    labels = Counter(box.label for record in records for box in record.boxes)
    assert sorted(labels) == ["1", "2", "3", "4", "5"]
    assert sum(labels.values()) == len(records) == 1032
    everything = Counter(b.label for r in read_dataset("sign-digits") for b in r.boxes)
    assert sum(everything[f"asl-{n}"] for n in "12345") == 1032  # the same images, ASL 0 and 6-9 left out


def test_new_recipe_fields_are_checked_with_one_line():
    recipe, _ = parse_recipe(DetectorRecipe, ["--zoom-copies", "2", "--zoom-span", "0.1,0.7"])
    assert (recipe.zoom_copies, recipe.zoom_span) == (2, [0.1, 0.7])
    for flags, message in (
        (["--zoom-copies", "-1"], "--zoom-copies: expected an integer >= 0"),
        (["--zoom-span", "0.5,0.2"], "--zoom-span: expected 'min,max' in (0, 1]"),
        (["--zoom-turn", "1.5"], "--zoom-turn: expected a share in [0, 1]"),
        (["--zoom-turn", "0.5"], "--zoom-turn: turns a share of the zoom copies; set --zoom-copies 1 or more too"),
        (["--zoom-photometric", "2"], "--zoom-photometric: expected a share in [0, 1]"),
        (["--zoom-photometric", "0.5"], "--zoom-photometric: makes a share of the zoom copies grey or blurred; set"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_recipe(DetectorRecipe, flags)
    recipe, _ = parse_recipe(ClassifierRecipe, ["--color-jitter", "0.4", "--grayscale", "0.2", "--blur", "0.1"])
    assert (recipe.color_jitter, recipe.grayscale, recipe.blur) == (0.4, 0.2, 0.1)
    for flags, message in (
        (["--color-jitter", "2"], "--color-jitter: expected a number in [0, 1]"),
        (["--grayscale", "1.5"], "--grayscale: expected a probability in [0, 1]"),
        (["--blur", "-0.1"], "--blur: expected a probability in [0, 1]"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_recipe(ClassifierRecipe, flags)


def test_photometric_augmentation_changes_colour_not_shape(records):
    from hybrid.training.classifier import train_transform

    recipe = ClassifierRecipe(
        image_size=32, crop_scale=[1.0, 1.0], flip=False, rotation=0, color_jitter=0.4, grayscale=1.0, blur=1.0
    )
    crop = records[0].load().crop(tuple(round(v) for v in records[0].boxes[0].xyxy))
    out = train_transform(recipe, [0.5] * 3, [0.5] * 3)(crop)
    assert out.shape == (3, 32, 32)
    assert np.allclose(out[0], out[1]) and np.allclose(out[1], out[2])  # grayscale=1.0: every crop grey
    plain = train_transform(
        ClassifierRecipe(image_size=32, crop_scale=[1.0, 1.0], flip=False, rotation=0), [0.5] * 3, [0.5] * 3
    )
    assert not np.allclose(plain(crop)[0], plain(crop)[1])  # without it, colour stays


def test_both_model_cards_carry_the_cross_domain_table_the_readme_shows():
    from hybrid.publish import card_template

    section = card_template("generalization")
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(rows) >= 3 and "Hands→Roboflow" in rows[0]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(row in readme for row in rows)  # one table: bench/generalize.py --card wrote it, README copies it
    for kind in ("classifier", "detector"):
        assert "{{ generalization }}" in card_template(kind)


def test_balanced_sampling_draws_each_class_equally_often():
    import torch

    from hybrid.training.classifier import balanced_sampler

    recipe, _ = parse_recipe(ClassifierRecipe, ["--balanced"])
    assert recipe.balanced and not ClassifierRecipe().balanced
    labels = [0] * 900 + [1] * 80 + [2] * 20  # as skewed as Roboflow's 'five' and worse
    drawn = Counter(labels[i] for i in balanced_sampler(labels, torch.Generator().manual_seed(0)))
    assert sum(drawn.values()) == len(labels)  # an epoch is as long as before
    assert all(280 <= drawn[label] <= 390 for label in (0, 1, 2)), drawn  # ~333 each, not 900/80/20
    again = Counter(labels[i] for i in balanced_sampler(labels, torch.Generator().manual_seed(0)))
    assert again == drawn  # seeded


def test_bench_cache_key_is_what_the_run_trains():
    """bench/generalize.py reuses a trained run when the effective recipe is the same, whatever the yaml's
    wording or the fields added since (at their defaults), and retrains when a value changes."""
    from bench.generalize import recipe_digest

    plain = ClassifierRecipe(color_jitter=0.4, output="a")
    assert recipe_digest(plain) == recipe_digest(ClassifierRecipe(color_jitter=0.4, balanced=False, output="b"))
    assert recipe_digest(plain) != recipe_digest(ClassifierRecipe(color_jitter=0.4, balanced=True))
    assert recipe_digest(plain) != recipe_digest(ClassifierRecipe(color_jitter=0.3))


def test_background_swap_keeps_the_hand_and_replaces_its_context(records):
    from hybrid.crops import crop_square_box
    from hybrid.data.writers import TRAIN_SCALE_JITTER, TRAIN_SHIFT_JITTER, iter_crops

    recipe, _ = parse_recipe(ClassifierRecipe, ["--background-swap", "0.5"])
    assert recipe.background_swap == 0.5 and ClassifierRecipe().background_swap == 0.0
    with pytest.raises(ValueError, match=re.escape("--background-swap: expected a probability in [0, 1]")):
        parse_recipe(ClassifierRecipe, ["--background-swap", "2"])
    photos = [r for r in records if r.boxes][:12]
    plain = [np.asarray(crop) for crop, _ in iter_crops(photos, train=True, seed=3)]
    assert all(
        np.array_equal(a, np.asarray(b))
        for a, (b, _) in zip(plain, iter_crops(photos, train=True, seed=3, background_swap=0.0))
    )
    swapped = [np.asarray(crop) for crop, _ in iter_crops(photos, train=True, seed=3, background_swap=1.0)]
    # the same square as without the swap (the swap's own draws come after it): the hand's box is kept as it was
    square = crop_square_box(
        photos[0].boxes[0].xyxy,
        scale_jitter=TRAIN_SCALE_JITTER,
        shift_jitter=TRAIN_SHIFT_JITTER,
        rng=__import__("random").Random(3),
    )
    x0, y0, x1, y1 = (round(b - s) for b, s in zip(photos[0].boxes[0].xyxy, square[:2] * 2))
    x0, y0 = max(x0, 0), max(y0, 0)
    assert np.array_equal(swapped[0][y0:y1, x0:x1], plain[0][y0:y1, x0:x1])
    assert swapped[0].shape == plain[0].shape
    ring = np.ones(plain[0].shape[:2], bool)
    ring[y0:y1, x0:x1] = False
    assert np.abs(swapped[0][ring].astype(int) - plain[0][ring].astype(int)).mean() > 10  # another photo's pixels
    assert sum(not np.array_equal(a, b) for a, b in zip(plain, swapped)) >= len(plain) - 1


def test_mixup_and_cutmix_blend_crops_and_labels():
    import torch

    from hybrid.training.classifier import mixer

    assert mixer(ClassifierRecipe(), 3) is None
    recipe, _ = parse_recipe(ClassifierRecipe, ["--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1"])
    assert (recipe.mixup, recipe.cutmix) == (0.2, 1.0)
    with pytest.raises(ValueError, match=re.escape("--cutmix: expected an alpha >= 0")):
        parse_recipe(ClassifierRecipe, ["--cutmix", "-1"])
    torch.manual_seed(0)
    np.random.seed(0)
    x, y = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    mixed, soft = mixer(recipe, 3)(x.clone(), y)
    assert soft.shape == (8, 3) and torch.allclose(soft.sum(1), torch.ones(8))
    assert (soft.max(1).values < 0.95).all()  # smoothed or blended: no hard one-hot target left
    assert not torch.equal(mixed, x)


def test_random_convolution_changes_colour_and_texture_but_keeps_the_hands_edges(records):
    import torch

    from hybrid.data.writers import iter_crops
    from hybrid.training.classifier import random_convolution

    recipe, _ = parse_recipe(ClassifierRecipe, ["--random-convolution", "0.5"])
    assert recipe.random_convolution == 0.5 and ClassifierRecipe().random_convolution == 0.0
    with pytest.raises(ValueError, match=re.escape("--random-convolution: expected a probability in [0, 1]")):
        parse_recipe(ClassifierRecipe, ["--random-convolution", "1.5"])
    crops = [np.asarray(crop.resize((64, 64)), np.float32) / 255 for crop, _ in iter_crops(records[:8])]
    batch = (torch.tensor(np.stack(crops)).permute(0, 3, 1, 2) - 0.45) / 0.225

    def edges(images):  # |d/dx| + |d/dy|, summed over the channels
        dx = images[:, :, :-1, 1:] - images[:, :, :-1, :-1]
        dy = images[:, :, 1:, :-1] - images[:, :, :-1, :-1]
        return (dx.abs() + dy.abs()).sum(1).flatten(1).numpy()

    assert torch.equal(random_convolution(batch, 0.0), batch)
    pixel_correlations = []
    for seed in range(6):  # a new filter (size 1 to 7) per batch
        torch.manual_seed(seed)
        changed = random_convolution(batch, 1.0)
        assert changed.shape == batch.shape and torch.isfinite(changed).all()
        assert all(not torch.equal(a, b) for a, b in zip(changed, batch))
        for before, after, edges_before, edges_after in zip(batch, changed, edges(batch), edges(changed)):
            assert np.corrcoef(edges_before, edges_after)[0, 1] > 0.3  # the outline stays where it was
            pixel_correlations.append(np.corrcoef(before.flatten(), after.flatten())[0, 1])
    assert min(pixel_correlations) < 0  # some crops get their colours turned around
    torch.manual_seed(0)
    half = random_convolution(batch, 0.5)
    assert 0 < sum(not torch.equal(a, b) for a, b in zip(half, batch)) < len(batch)


def test_mix_style_mixes_early_feature_statistics_in_training_only():
    import timm
    import torch

    from hybrid.training.classifier import add_mix_style

    recipe, _ = parse_recipe(ClassifierRecipe, ["--mix-style", "0.5"])
    assert recipe.mix_style == 0.5 and ClassifierRecipe().mix_style == 0.0
    with pytest.raises(ValueError, match=re.escape("--mix-style: expected a probability in [0, 1]")):
        parse_recipe(ClassifierRecipe, ["--mix-style", "2"])
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    keys = list(model.state_dict())
    seen = {}
    model.layer1.register_forward_hook(lambda module, inputs, output: seen.update(raw=output.detach().clone()))
    handles = add_mix_style(model, 1.0)
    assert len(handles) == 2 and list(model.state_dict()) == keys  # hooks: the saved network is the architecture's
    model.layer1.register_forward_hook(lambda module, inputs, output: seen.update(mixed=output.detach().clone()))
    batch = torch.randn(6, 3, 64, 64)

    def stats(features):
        return features.mean(dim=(2, 3)), features.var(dim=(2, 3)).sqrt()

    model.train()
    model(batch)
    raw, mixed = seen["raw"], seen["mixed"]
    assert not torch.allclose(raw, mixed)
    (raw_mean, raw_std), (mixed_mean, mixed_std) = stats(raw), stats(mixed)
    standardized = [
        (f - m[..., None, None]) / s[..., None, None] for f, (m, s) in ((raw, stats(raw)), (mixed, stats(mixed)))
    ]
    assert torch.allclose(*standardized, atol=1e-3)  # the content (where each channel is high or low) stays
    # each crop's new statistics are a blend of two crops' own: inside the batch's range, channel by channel
    assert (mixed_mean >= raw_mean.min(0).values - 1e-4).all() and (mixed_mean <= raw_mean.max(0).values + 1e-4).all()
    assert (mixed_std >= raw_std.min(0).values - 1e-4).all() and (mixed_std <= raw_std.max(0).values + 1e-4).all()
    model.eval()
    model(batch)
    assert torch.equal(seen["raw"], seen["mixed"])  # evaluation and export see the network as it is
    model.train()
    for handle in handles:
        handle.remove()
    add_mix_style(model, 0.0)
    model(batch)
    assert torch.equal(seen["raw"], seen["mixed"])
