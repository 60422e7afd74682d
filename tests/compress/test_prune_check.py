"""Pruning a model PaddleSlim cannot prune consistently (issue 15): a user model whose forward reshapes conv
features before its classifier. The pruned copy is run on a real batch before anything is written; the stage
is refused with one line naming the layer, and no folder is left behind. A prunable model passes the check."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: zlib preload)
from robust_paddle import config as C
from robust_paddle.errors import ConfigError

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "quickstart.yaml")
FAST = ["data.subset=120", "data.batch_size=40", "train.epochs=1", "train.progress=false", "train.visualdl=false",
        "train.report=false", "train.calibration=false", "train.checkpoint_every=0", "slim.finetune_epochs=1",
        "slim.latency_iters=2", "slim.latency_batch_sizes=[1]", "data.noise.kind=none"]
USER_MODEL = textwrap.dedent('''
    import paddle.nn as nn
    import paddle.nn.functional as F


    class ReshapingNet(nn.Layer):
        """Conv features reshaped by hand before the classifier: PaddleSlim cannot see the fc consumes them."""

        def __init__(self, num_classes, input_shape):
            super().__init__()
            c, h, w = input_shape
            self.conv = nn.Conv2D(c, 16, 3, padding=1)
            self.bn = nn.BatchNorm2D(16)
            self.fc = nn.Linear(16 * h * w, num_classes)

        def forward(self, x):
            x = F.relu(self.bn(self.conv(x)))
            return self.fc(x.reshape([x.shape[0], -1]))


    def build(num_classes, input_shape):
        return ReshapingNet(num_classes, input_shape)
''')


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    import sys

    from robust_paddle.pipeline.run import train

    root = tmp_path_factory.mktemp("prune-user")
    (root / "issue15_usermodel.py").write_text(USER_MODEL)
    sys.path.insert(0, str(root))
    out = str(root / "run")
    cfg = C.load(CONFIG, FAST + ["model.name=issue15_usermodel:build", "model.params={}", f"output_dir={out}"])
    train(cfg)
    yield cfg, os.path.join(out, "checkpoints", "latest.pdckpt"), root
    sys.path.remove(str(root))


def test_unprunable_user_model_is_refused_naming_the_layer_and_nothing_is_written(user_run):
    from robust_paddle.pipeline.commands import compress_command

    cfg, ckpt, root = user_run
    cfg = C.with_values(cfg, {"slim.stages": [{"name": "prune", "ratio": 0.3}]})
    out = root / "compressed"
    with pytest.raises(ConfigError, match=r"^slim.stages\[0\]: cannot prune network 'net' consistently: PaddleSlim "
                       r"cannot shrink parameter 'fc.weight' of layer 'fc' \(Linear\) with the conv filters it "
                       r"consumes \(.+\); PaddleSlim cannot follow a reshape/view of conv features"):
        compress_command(cfg, ckpt, out_dir=str(out), print_table=False)
    assert not out.exists()  # no input/, no empty 00_prune/


def test_the_cli_prints_one_line_and_exits_2(user_run, capsys):
    import yaml

    from robust_paddle.cli import main

    cfg, ckpt, root = user_run
    path = root / "cfg.yaml"
    data = C.to_dict(cfg)
    data["slim"]["stages"] = [{"name": "prune", "flops_target": 0.3}]
    path.write_text(yaml.safe_dump(data))
    assert main(["-q", "compress", "-c", str(path), "--checkpoint", ckpt, "--out", str(root / "c2")]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("robust-paddle")]
    assert len(err) == 1 and err[0].startswith("robust-paddle: error: slim.stages[0]: cannot prune network 'net'")
    assert not (root / "c2").exists()


def test_check_pruned_forward_passes_a_consistent_model_and_names_a_wrong_output_shape():
    import paddle

    from robust_paddle.compress.prune import check_pruned_forward

    net = paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(64, 10))
    batch = np.zeros((4, 1, 8, 8), dtype=np.float32)
    check_pruned_forward(net, batch, num_classes=10, field="slim.stages[0]", network="net")
    with pytest.raises(ConfigError, match=r"a batch of 4 gives output shape \[4, 10\], expected \[4, 3\]"):
        check_pruned_forward(net, batch, num_classes=3, field="slim.stages[0]", network="net")


def test_check_pruned_forward_names_the_failing_layer():
    import paddle

    from robust_paddle.compress.prune import check_pruned_forward

    net = paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(32, 10))  # as if its input had been pruned
    with pytest.raises(ConfigError, match=r"^slim.stages\[1\]: cannot prune network 'net2' consistently: after "
                       r"pruning, layer '1' \(Linear\) fails on a real batch \(.+\); PaddleSlim cannot follow"):
        check_pruned_forward(net, np.zeros((4, 1, 8, 8), dtype=np.float32), num_classes=10, field="slim.stages[1]",
                             network="net2")
