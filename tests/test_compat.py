"""The zlib shim: gzip, PNG and savez_compressed must work after `import robust_paddle; import paddle`."""

import subprocess
import sys
import textwrap


def test_gzip_png_and_savez_after_paddle_import(tmp_path):
    # A fresh interpreter: the order of imports is what the shim is about.
    code = textwrap.dedent(f"""
        import robust_paddle, paddle, gzip, io, numpy as np
        from PIL import Image
        data = b"robust" * 1000
        assert gzip.decompress(gzip.compress(data)) == data
        Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype("uint8")).save(r"{tmp_path}/x.png")
        assert np.array_equal(np.asarray(Image.open(r"{tmp_path}/x.png")), (np.arange(64).reshape(8, 8) * 4))
        np.savez_compressed(r"{tmp_path}/a.npz", x=np.ones(100))
        assert np.load(r"{tmp_path}/a.npz")["x"].sum() == 100
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.plot([0, 1]); plt.savefig(r"{tmp_path}/plot.png")
        print("OK", robust_paddle._compat.ZLIB_LIBRARY)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK libz" in res.stdout
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_file_names(tmp_path):
    from robust_paddle import _compat

    prefix = str(tmp_path / "inference")
    assert _compat.model_file(prefix).endswith(".json" if _compat.IS_PADDLE3 else ".pdmodel")
    (tmp_path / "inference.json").write_text("{}")
    assert _compat.model_file(prefix) == prefix + ".json"  # whatever the version, an existing file wins
    assert _compat.params_file(prefix) == prefix + ".pdiparams"


def test_paddle2onnx_options_and_format_check():
    import pytest

    from robust_paddle import _compat
    from robust_paddle.errors import CompatibilityError

    assert _compat.paddle2onnx_options("1.3.1") == {}
    # 2.x would pip-install polygraphy's dependencies at run time (it upgraded numpy): onnxoptimizer instead
    assert _compat.paddle2onnx_options("2.1.0") == {"optimize_tool": "onnxoptimizer"}
    _compat.check_paddle2onnx_reads("m/inference.pdmodel", "1.3.1")
    _compat.check_paddle2onnx_reads("m/inference.json", "2.1.0")
    with pytest.raises(CompatibilityError, match=r"paddle2onnx 1\.3\.1 reads only \.pdmodel.*inference\.json.*2\.x"):
        _compat.check_paddle2onnx_reads("m/inference.json", "1.3.1")


def test_legacy_program_guard_writes_a_pdmodel(tmp_path):
    import numpy as np
    import paddle

    from robust_paddle import _compat

    net = paddle.nn.Linear(3, 2)
    spec = [paddle.static.InputSpec([None, 3], "float32", "x")]
    with _compat.legacy_program_guard():
        paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), str(tmp_path / "m"))
    assert (tmp_path / "m.pdmodel").exists() and not (tmp_path / "m.json").exists()
    assert paddle.in_dynamic_mode()
    from paddle import inference

    cfg = inference.Config(str(tmp_path / "m.pdmodel"), str(tmp_path / "m.pdiparams"))
    cfg.switch_ir_optim(False)
    pred = inference.create_predictor(cfg)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    pred.get_input_handle(pred.get_input_names()[0]).copy_from_cpu(x)
    pred.run()
    out = pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(out, net(paddle.to_tensor(x)).numpy(), rtol=1e-6)


def test_legacy_program_guard_traces_matmul_tanh_sum_and_a_gru_then_restores_paddle(tmp_path):
    """Paddle 3.3 binds paddle.matmul / tanh / sum to bare _C_ops calls that reject legacy Variables, and an RNN's
    storage-less dropout state breaks the legacy conversion; inside the guard both trace (a no-op on 2.x)."""
    import sys

    import numpy as np
    import paddle

    from robust_paddle import _compat

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.rnn = paddle.nn.GRU(3, 4, direction="bidirect")
            self.lin = paddle.nn.Linear(8, 8)

        def forward(self, x):
            h, _ = self.rnn(x)  # [B, T, 8]
            a = paddle.tanh(self.lin(h))
            w = paddle.nn.functional.sigmoid(sys.modules["paddle.tensor"].matmul(a, h, transpose_y=True))  # [B, T, T]
            return paddle.sum(paddle.matmul(w, h), axis=1) + paddle.sum(a)  # [B, 8]

    paddle.seed(0)
    net = Net()
    net.eval()
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    ref = net(paddle.to_tensor(x)).numpy()
    before = (paddle.matmul, paddle.tanh, paddle.sum, paddle.nn.functional.sigmoid,
              sys.modules["paddle.tensor"].matmul, paddle.Tensor.__dict__.get("device"))
    spec = [paddle.static.InputSpec([None, 5, 3], "float32", "x")]
    with _compat.legacy_program_guard():
        paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), str(tmp_path / "m"))
    assert (paddle.matmul, paddle.tanh, paddle.sum, paddle.nn.functional.sigmoid,
            sys.modules["paddle.tensor"].matmul, paddle.Tensor.__dict__.get("device")) == before
    assert (tmp_path / "m.pdmodel").exists() and paddle.in_dynamic_mode()
    from paddle import inference

    cfg = inference.Config(str(tmp_path / "m.pdmodel"), str(tmp_path / "m.pdiparams"))
    cfg.switch_ir_optim(False)
    pred = inference.create_predictor(cfg)
    pred.get_input_handle(pred.get_input_names()[0]).copy_from_cpu(x)
    pred.run()
    np.testing.assert_allclose(pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu(), ref, atol=1e-5)
    # outside the guard the patched functions are the originals: dygraph results unchanged
    np.testing.assert_allclose(net(paddle.to_tensor(x)).numpy(), ref, atol=0)


def test_native_optimizer_only_on_paddle3():
    import paddle

    from robust_paddle import _compat

    want = paddle.optimizer.NAdam if _compat.IS_PADDLE3 else None
    assert _compat.native_optimizer("NAdam") is want


def test_jit_save_retrying_converts_an_untouched_copy_after_a_missed_parameter():
    import numpy as np
    import paddle

    from robust_paddle import _compat

    net = paddle.nn.Linear(3, 2)
    seen = []

    def save(layer):
        seen.append(layer)
        if len(seen) == 1:
            layer.weight.set_value(paddle.zeros_like(layer.weight))  # to_static changes its input in place
            raise KeyError("conv2d_1.w_0_deepcopy_5")
        return "prefix"

    before = net.weight.numpy().copy()
    assert _compat.jit_save_retrying(save, net) == "prefix"
    assert len(seen) == 2 and seen[0] is net and seen[1] is not net
    np.testing.assert_array_equal(seen[1].weight.numpy(), before)  # the copy was taken before the first try


def test_jit_save_retrying_gives_up_after_the_second_try_and_never_retries_other_errors():
    import paddle
    import pytest

    from robust_paddle import _compat

    calls = []

    def always_missing(layer):
        calls.append(layer)
        raise KeyError("batch_norm2d_54.w_0")

    with pytest.raises(KeyError, match="batch_norm2d_54.w_0"):
        _compat.jit_save_retrying(always_missing, paddle.nn.Linear(2, 2))
    assert len(calls) == 2

    def broken(layer):
        calls.append(layer)
        raise ValueError("input_spec shape")

    calls.clear()
    with pytest.raises(ValueError, match="input_spec shape"):
        _compat.jit_save_retrying(broken, paddle.nn.Linear(2, 2))
    assert len(calls) == 1
