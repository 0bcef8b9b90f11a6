"""The registry and the adapters agree: every loss is implemented everywhere it
should be, and no adapter implements a loss that is not registered."""
from __future__ import annotations

import pytest

from harness import adapters
from harness.model import registry
from harness.model.spec import ArgSpec, Case, Domain, Layout, LossSpec, ParamSpec
from reference import derivatives, formulas

CORE_LOSSES = {"mse", "mae", "huber", "smooth_l1", "log_cosh", "bce", "bce_logits", "cross_entropy",
               "soft_cross_entropy", "nll", "kl_div", "hinge", "squared_hinge", "multi_margin",
               "categorical_hinge", "contrastive"}


# The rest of the catalog in DESIGN.md.
FURTHER_LOSSES = {"msle", "poisson_nll", "gaussian_nll", "categorical_ce", "soft_margin", "focal",
                  "cosine_similarity", "triplet_margin", "margin_ranking", "l2_penalty", "l1_penalty"}


def test_whole_catalog_is_registered() -> None:
    assert set(registry.names()) == CORE_LOSSES | FURTHER_LOSSES


@pytest.mark.parametrize("framework", list(adapters.FRAMEWORKS))
def test_adapters_cover_the_registry(framework: str) -> None:
    adapter = adapters.load(framework)
    assert tuple(adapter.impls) == adapters.FRAMEWORKS[framework].impls, "declared impls out of date"
    for table in adapter.impls.values():
        assert set(table) <= set(registry.names()), "implementation of an unregistered loss"
    # Either each impl is a variant of every loss (numpy: naive, stable; pytensor: composed,
    # unstabilized), or the impls split the catalog, one impl per loss (the framework's API where
    # it has the loss, composed otherwise).
    tables = [set(table) for table in adapter.impls.values()]
    variants = all(table == set(registry.names()) for table in tables)
    split = all(len(adapter.impl_names(name)) == 1 for name in registry.names())
    assert variants or split, f"{framework}: impls neither cover every loss each nor one impl per loss"


def test_spec_validation() -> None:
    args = (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL))
    with pytest.raises(ValueError, match="first argument must be 'input'"):
        LossSpec("x", "f", "", Layout.ELEMENTWISE, args[::-1], formulas.mse, derivatives.mse)
    with pytest.raises(ValueError, match="'target' \\(if any\\) the second"):
        LossSpec("x", "f", "", Layout.ELEMENTWISE, (args[0], ArgSpec("var", Domain.POSITIVE), args[1]), formulas.mse,
                 derivatives.mse)
    with pytest.raises(ValueError, match="default reduction"):
        LossSpec("x", "f", "", Layout.ELEMENTWISE, args, formulas.mse, derivatives.mse, default_reduction="max")
    with pytest.raises(ValueError, match="per-row"):
        LossSpec("x", "f", "", Layout.ELEMENTWISE, (args[0], ArgSpec("target", Domain.REAL, per_row=True)),
                 formulas.mse, derivatives.mse)
    with pytest.raises(ValueError, match="one per row"):
        ArgSpec("target", Domain.CLASS_INDEX)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.get("mse"))


def test_params_are_validated() -> None:
    huber = registry.get("huber")
    assert huber.resolve_params({}) == {"delta": 1.0}
    assert huber.resolve_params({"delta": 0.5}) == {"delta": 0.5}
    with pytest.raises(ValueError, match="delta must be > 0"):
        huber.resolve_params({"delta": 0.0})
    with pytest.raises(ValueError, match="no parameter 'beta'"):
        huber.resolve_params({"beta": 1.0})
    with pytest.raises(ValueError, match="finite"):
        ParamSpec("m", 1.0).validate(float("nan"))


def test_case_validation() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        Case("mse", "numpy", "naive", "float8")
    with pytest.raises(ValueError, match="unknown reduction"):
        Case("mse", "numpy", "naive", "float32", reduction="max")


def test_disabled_framework_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBENCH_DISABLE", "tensorflow")
    with pytest.raises(adapters.FrameworkUnavailable, match="disabled"):
        adapters.load("tensorflow")
    assert adapters.load("numpy").name == "numpy"


def test_every_loss_has_each_piece_adding_a_loss_needs() -> None:
    """The README's list for adding a loss, checked: whatever is missing is named."""
    from harness.adapters.numpy_adapter.forward import FORMULAS
    from harness.adapters.numpy_adapter.gradients import GRADIENTS

    missing = []
    for spec in registry.iter_losses():
        if getattr(formulas, spec.name, None) is not spec.reference:
            missing.append(f"{spec.name}: reference/formulas.py has no function {spec.name} (its spec's reference)")
        if getattr(derivatives, spec.name, None) is not spec.derivative:
            missing.append(f"{spec.name}: reference/derivatives.py has no function {spec.name} (its spec's derivative)")
        for table, where in ((FORMULAS, "FORMULAS in numpy_adapter/forward.py"),
                             (GRADIENTS, "GRADIENTS in numpy_adapter/gradients.py")):
            if spec.name not in table:
                missing.append(f"{spec.name}: no entry in {where}")
        for framework in adapters.FRAMEWORKS:
            try:
                adapter = adapters.load(framework)
            except adapters.FrameworkUnavailable:
                continue
            if not adapter.impl_names(spec.name):
                missing.append(f"{spec.name}: the {framework} adapter implements it nowhere")
            for known in adapter.known:
                assert known.loss in registry.names(), f"{framework} declares a known issue of unknown {known.loss}"
    assert not missing, "\n".join(missing)
