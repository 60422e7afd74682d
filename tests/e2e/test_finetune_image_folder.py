"""Issue 16's 'done when': an image folder, model.pretrained, augment: imagenet, 2 loader workers -> trains,
resumes exactly, exports, and the server predicts what evaluation predicts on the same files."""

import base64
import json
import shutil

import numpy as np
import paddle
import pytest
from PIL import Image

from robust_paddle import config as C
from robust_paddle.models import build_model
from robust_paddle.pipeline import build as build_mod
from robust_paddle.pipeline import run as run_mod


def write_folder(root, n_per_class=10, classes=("cat", "dog", "fox"), size=(28, 22)):
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            arr = np.clip(rng.normal(40 + 80 * label, 30, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{k}.jpg", quality=95)


def history(path):
    return json.loads((path / "metrics.json").read_text())["history"]


@pytest.mark.slow
def test_pretrained_image_folder_trains_resumes_exports_and_serves(tmp_path):
    write_folder(tmp_path / "photos")
    paddle.seed(0)  # "zoo" weights for a 5-class small_cnn: the head is re-initialised for our 3 classes
    zoo = build_model("small_cnn", num_classes=5, input_shape=(3, 16, 16))
    paddle.save(zoo.state_dict(), str(tmp_path / "zoo.pdparams"))
    over = [f"data.path={tmp_path / 'photos'}", "data.name=image_folder", "data.image_size=16",
            "data.eval_resize_short=18", "data.augment=imagenet", "data.num_workers=2", "data.batch_size=8",
            "data.val_split=0.15", "data.test_split=0.2", "data.noise.kind=symmetric", "data.noise.rate=0.2",
            "model.name=small_cnn", f"model.pretrained={tmp_path / 'zoo.pdparams'}", "train.progress=false",
            "train.visualdl=false", "train.report=false", "train.calibration=false", "train.checkpoint_every=1"]
    full = C.load(None, over + ["train.epochs=3", f"output_dir={tmp_path / 'full'}"])
    run_mod.train(full)
    table = (tmp_path / "full" / "pretrained_keys.txt").read_text()
    assert "reinit   classifier.weight" in table and "head shape [128, 5] -> [128, 3]" in table

    part = tmp_path / "part"  # the same run as it stood after epoch 1, resumed to the end
    (part / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "config.yaml", part / "config.yaml")
    shutil.copy(tmp_path / "full" / "checkpoints" / "epoch_001.pdckpt", part / "checkpoints" / "latest.pdckpt")
    run_mod.train(C.with_values(full, {"output_dir": str(part)}), resume=str(part))
    a, b = history(tmp_path / "full"), history(part)
    assert [r["train/loss"] for r in a] == [r["train/loss"] for r in b]
    assert [r["test/acc"] for r in a] == [r["test/acc"] for r in b]

    from robust_paddle.deploy.serve import close_app, create_app
    from robust_paddle.pipeline.commands import export_command

    ckpt = str(tmp_path / "full" / "checkpoints" / "latest.pdckpt")
    export_command(full, ckpt, out_dir=str(tmp_path / "export"))
    info = (tmp_path / "export" / "inference.yml").read_text()
    assert "resize_short: 18" in info and "crop: center" in info
    run = build_mod.load_run(C.with_values(full, {"train.device": "cpu"}), ckpt)
    net = run.method.networks["net"]
    net.eval()
    test = run.data.test
    x = np.stack([test.get_x(i) for i in range(len(test))])
    with paddle.no_grad():
        logits = net(paddle.to_tensor(x)).numpy()
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    images = [base64.b64encode(open(p, "rb").read()).decode() for p in test.paths]
    app = create_app(str(tmp_path / "export"))
    try:
        reply = app.test_client().post("/predict", json={"images": images, "top_k": 3})
    finally:
        close_app(app)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    preds = reply.get_json()["predictions"]
    assert [p["class_id"] for p in preds] == ref.argmax(1).tolist()
    served = np.array([[t["probability"] for t in sorted(p["top_k"], key=lambda t: t["class_id"])] for p in preds])
    np.testing.assert_allclose(served, ref, atol=1e-5)
