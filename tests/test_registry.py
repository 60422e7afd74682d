import pytest

from robust_paddle.registry import Registry


def make():
    reg = Registry("thing")

    @reg.register("alpha")
    class Alpha:
        def __init__(self, *, size: int = 1, scale: float = 1.0):
            self.size, self.scale = size, scale

    @reg.register("beta")
    def beta(*, n: int):
        return n * 2

    return reg, Alpha


def test_build_and_lookup():
    reg, alpha = make()
    assert reg.names() == ["alpha", "beta"]
    assert "alpha" in reg and len(reg) == 2 and list(reg) == ["alpha", "beta"]
    obj = reg.build("alpha", size=3)
    assert isinstance(obj, alpha) and obj.size == 3 and obj.scale == 1.0
    assert reg.build("beta", n=4) == 8


def test_unknown_name_lists_choices():
    reg, _ = make()
    with pytest.raises(ValueError, match=r"unknown thing 'gamma'; choose one of: alpha, beta"):
        reg.get("gamma")


def test_duplicate_name_rejected():
    reg, _ = make()
    with pytest.raises(ValueError, match=r"thing 'alpha' is already registered .*registered: alpha, beta"):
        reg.register("alpha")(lambda: None)


def test_names_must_be_lowercase():
    reg, _ = make()
    with pytest.raises(ValueError, match="lowercase"):
        reg.register("Gamma")(lambda: None)


def test_unknown_kwargs_name_the_field_and_allowed_keys():
    reg, _ = make()
    with pytest.raises(ValueError, match=r"loss.params: unknown key\(s\) sise for thing 'alpha'; allowed: size, scale"):
        reg.build("alpha", field="loss.params", sise=3)


def test_project_registries_are_populated():
    import robust_paddle.losses  # noqa: F401
    import robust_paddle.methods  # noqa: F401
    import robust_paddle.models  # noqa: F401
    from robust_paddle.registry import LOSSES, METHODS, MODELS

    assert {"ce", "gce", "sce", "focal", "mae"} <= set(LOSSES.names())
    assert "standard" in METHODS
    assert {"mlp", "small_cnn"} <= set(MODELS.names())


def test_positional_arguments_are_not_listed_as_allowed_keys():
    reg = Registry("method")

    @reg.register("m")
    class M:
        def __init__(self, ctx, *, rate: float = 0.1):
            self.ctx, self.rate = ctx, rate

    assert reg.build("m", "context", rate=0.2).rate == 0.2
    with pytest.raises(ValueError, match=r"method.params: unknown key\(s\) rte for method 'm'; allowed: rate$"):
        reg.build("m", "context", field="method.params", rte=0.2)
