"""``ignore_index`` on every loss: ignored samples contribute nothing and the mean is over the others."""

import numpy as np
import paddle
import pytest

from robust_paddle.losses import LOSSES, build_loss


def _batch():
    rng = np.random.default_rng(0)
    logits = paddle.to_tensor(rng.normal(size=(6, 4)).astype("float32"))
    labels = np.array([0, 3, -100, 1, -100, 2], dtype=np.int64)
    return logits, labels


@pytest.mark.parametrize("name", LOSSES.names())
def test_ignored_samples_are_left_out(name):
    logits, labels = _batch()
    keep = labels != -100
    loss = build_loss(name, num_classes=4, ignore_index=-100)
    ref = build_loss(name, num_classes=4)
    got = float(loss(logits, paddle.to_tensor(labels)))
    want = float(ref(paddle.to_tensor(logits.numpy()[keep]), paddle.to_tensor(labels[keep])))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    per = build_loss(name, num_classes=4, ignore_index=-100, reduction="none")(logits, paddle.to_tensor(labels))
    assert per.shape == [6] and np.all(per.numpy()[~keep] == 0.0)


def test_label_smoothing_with_ignore_index_and_an_all_ignored_batch():
    logits, labels = _batch()
    keep = labels != -100
    ce = build_loss("ce", num_classes=4, label_smoothing=0.1, ignore_index=-100)
    want = float(build_loss("ce", num_classes=4, label_smoothing=0.1)(paddle.to_tensor(logits.numpy()[keep]),
                                                                       paddle.to_tensor(labels[keep])))
    assert float(ce(logits, paddle.to_tensor(labels))) == pytest.approx(want, rel=1e-6)
    assert float(ce(logits, paddle.to_tensor(np.full(6, -100, np.int64)))) == 0.0


def test_ignore_index_must_lie_outside_the_classes():
    with pytest.raises(ValueError, match="ignore_index must be an int outside the class indices 0..3"):
        build_loss("ce", num_classes=4, ignore_index=2)
