"""Evaluation arithmetic on hand-made cases with answers worked out by hand, then the CLI on real images."""

from __future__ import annotations

import pytest

from hybrid.evaluate import (
    MISSED,
    Guess,
    Truth,
    average_precision,
    best_f1_threshold,
    gesture_average_precision,
    hand_metrics,
    iou_matrix,
    match,
)

SQUARE = (0.0, 0.0, 10.0, 10.0)


def _case():
    """4 images, 4 ground-truth hands, 5 predictions (answers derived in the comments)."""
    truths = [[Truth(SQUARE, "1"), Truth((20, 0, 30, 10), "2")], [Truth(SQUARE, "2")], [Truth(SQUARE, "3")], []]
    guesses = [
        [
            Guess(SQUARE, 0.9, "1"),  # matches '1', right gesture
            Guess((20, 0, 30, 10), 0.8, "3"),  # matches '2', wrong gesture
            Guess((50, 50, 60, 60), 0.7, "1"),  # matches nothing
        ],
        [Guess((1, 0, 11, 10), 0.6, "2")],  # IoU 90/110 = 0.82 with '2', right gesture
        [],  # the '3' is missed
        [Guess(SQUARE, 0.5, "unknown")],  # a hand where there is none
    ]
    return truths, guesses


def test_best_f1_threshold_known_answer():
    truths, guesses = _case()
    # By score 0.9 TP, 0.8 TP, 0.7 FP, 0.6 TP, 0.5 FP (4 truths): F1 .4 .667 .571 .75 .667 -> keep down to 0.6,
    # cut halfway to the next score.
    best = best_f1_threshold(truths, guesses)
    assert best == pytest.approx({"threshold": 0.55, "precision": 0.75, "recall": 0.75, "f1": 0.75})
    # Equal scores are kept or dropped together: two at 0.5, one a hit, cannot be split.
    tied = [[Guess(SQUARE, 0.5, "a"), Guess((50, 50, 60, 60), 0.5, "a")]]
    assert best_f1_threshold([[Truth(SQUARE, "a")]], tied) == pytest.approx(
        {"threshold": 0.25, "precision": 0.5, "recall": 1.0, "f1": 2 / 3}
    )
    assert best_f1_threshold([[Truth(SQUARE, "a")]], [[Guess((50, 50, 60, 60), 0.9, "a")]])["threshold"] is None


def test_iou_matrix_known_values():
    ious = iou_matrix([SQUARE], [SQUARE, (5, 0, 15, 10), (10, 10, 20, 20), (1, 0, 11, 10)])
    assert ious.shape == (1, 4)
    assert ious[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0, 90 / 110])
    assert iou_matrix([], [SQUARE]).shape == (0, 1)
    # Degenerate (zero-area) boxes give 0, not NaN.
    assert iou_matrix([(3, 3, 3, 3)], [(3, 3, 3, 3)])[0, 0] == 0.0


def test_match_prefers_higher_score_then_higher_iou():
    truths = [Truth(SQUARE, "a")]
    guesses = [Guess(SQUARE, 0.5, "a"), Guess((0, 0, 10, 9), 0.9, "a")]
    assert match(truths, guesses) == [None, 0]  # the 0.9 guess takes the only truth
    # Two truths: each guess takes the best remaining one.
    truths = [Truth(SQUARE, "a"), Truth((2, 0, 12, 10), "b")]
    guesses = [Guess((2, 0, 12, 10), 0.9, "b"), Guess((1, 0, 11, 10), 0.8, "a")]
    assert match(truths, guesses) == [1, 0]
    # Below the threshold nothing matches.
    assert match([Truth(SQUARE, "a")], [Guess((5, 0, 15, 10), 1.0, "a")]) == [None]


def test_hand_metrics_known_answer():
    truths, guesses = _case()
    m = hand_metrics(truths, guesses)
    assert (m["hands"], m["predictions"], m["correct"]) == (4, 5, 2)
    assert m["hybrid_accuracy"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 5)
    assert m["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert m["detection_recall"] == pytest.approx(3 / 4)
    pc = m["per_class"]
    assert pc["1"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert pc["2"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert pc["3"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert set(pc) == {"1", "2", "3"}  # 'unknown' is not a ground-truth class
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)

    labels = m["confusion"]["labels"]
    assert labels == ["1", "2", "3", "unknown", MISSED]
    cm = {(labels[i], labels[j]): v for i, row in enumerate(m["confusion"]["matrix"]) for j, v in enumerate(row) if v}
    assert cm == {
        ("1", "1"): 1,
        ("2", "3"): 1,
        ("2", "2"): 1,
        ("3", MISSED): 1,
        (MISSED, "1"): 1,
        (MISSED, "unknown"): 1,
    }


def test_average_precision_known_answer():
    truths, guesses = _case()
    # By score: TP, TP, FP, TP, FP over 4 truths -> recall .25 .5 .5 .75 .75, precision 1 1 .67 .75 .6;
    # the envelope is 1 1 .75 .75 .6, so AP = .25*1 + .25*1 + .25*.75 = .6875.
    assert average_precision(truths, guesses) == pytest.approx(0.6875)
    # Per gesture: '1' -> 1.0 (TP before FP); '2' -> 0.5 (one of two found); '3' -> 0 (its guess was wrong).
    assert gesture_average_precision(truths, guesses) == pytest.approx({"1": 1.0, "2": 0.5, "3": 0.0})
    assert average_precision([[Truth(SQUARE, "a")]], [[]]) == 0.0
    assert average_precision([[Truth(SQUARE, "a")]], [[Guess(SQUARE, 0.1, "a")]]) == 1.0


def test_hand_metrics_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="images"):
        hand_metrics([[]], [])


# --- the command on real images with the fixture models ---------------------------------------------


def test_eval_cli_on_real_images(trained_detector, trained_classifier, tmp_path, capsys, monkeypatch, model_cache):
    import json

    from PIL import Image

    from hybrid.classifier import GestureClassifier
    from hybrid.cli import main
    from hybrid.crops import square_crop
    from hybrid.data import canonical_label, read_dataset

    monkeypatch.setenv("HYBRID_CACHE", str(model_cache))
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "hands",
            "--split",
            "test",
            "--limit",
            "3",
            "--detector",
            str(trained_detector),
            "--classifier",
            str(trained_classifier),
            "--gesture-detector",
            str(trained_detector),
            "--output",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    records = read_dataset("hands", split="test", merge_labels=True)[:3]
    assert metrics["images"] == 3
    assert metrics["hands"] == sum(len(r.boxes) for r in records)
    assert metrics["hybrid_accuracy"] == pytest.approx(metrics["correct"] / metrics["hands"])
    for key in ("precision", "detection_recall", "map50", "gesture_map50", "classifier_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # The classifier on ground-truth crops, recomputed independently through GestureClassifier.predict.
    classifier = GestureClassifier.from_pretrained(trained_classifier)
    crops = [square_crop(r.load(), b.xyxy) for r in records for b in r.boxes]
    truth = [b.label for r in records for b in r.boxes]
    top = [p[0].label for p in classifier.predict(crops, top_k=1)]
    expected = sum(canonical_label(t) == canonical_label(p) for t, p in zip(truth, top)) / len(truth)
    assert metrics["classifier_accuracy"] == pytest.approx(expected)
    # The hands-only detector as a "gesture detector": its label 'hand' is never a gesture.
    assert metrics["gesture_detector"]["hybrid_accuracy"] == 0.0
    assert metrics["latency"]["images"] == 3
    assert metrics["latency"]["median_ms"] > 0
    confusion = metrics["confusion"]
    assert sum(map(sum, confusion["matrix"])) >= metrics["hands"]
    assert Image.open(out / "confusion_matrix.png").size[0] > 100
    assert json.loads((out / "metrics.json").read_text())["hands"] == metrics["hands"]
    # Bad input: one clear error line.
    assert (
        main(
            [
                "eval",
                str(tmp_path / "no-such-set"),
                "--detector",
                str(trained_detector),
                "--classifier",
                str(trained_classifier),
            ]
        )
        == 2
    )
    assert "no-such-set" in capsys.readouterr().err
