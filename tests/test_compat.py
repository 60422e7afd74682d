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


def test_require_paddle2_for_names_stage_and_version(monkeypatch):
    import pytest

    from robust_paddle import _compat

    monkeypatch.setattr(_compat, "IS_PADDLE3", True)
    with pytest.raises(RuntimeError, match="compression stage 'ptq' needs PaddlePaddle 2.6"):
        _compat.require_paddle2_for("ptq")
    monkeypatch.setattr(_compat, "IS_PADDLE3", False)
    _compat.require_paddle2_for("ptq")
