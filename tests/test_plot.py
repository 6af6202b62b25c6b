"""fastem.plot: the EM figure is one recorded run, its panels in order, its curve complete, its keys drawn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastem import GaussianMixture, plot  # fastem.plot imports matplotlib only when drawing
from fastem.datasets import load_old_faithful

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def faithful():
    X = load_old_faithful()
    return X, plot.faithful_em_trace(X)


def test_trace_is_one_run_recorded_by_a_callback(faithful):
    X, trace = faithful
    assert trace.converged and trace.n_iter == 18  # the README and the demo's text say "about 18"
    # requested iterations the run reached, then the final model; nothing past convergence
    assert sorted(trace.models) == [0, 1, 2, 5, 10, 18]
    assert trace.models[trace.n_iter] is trace.final
    # the curve: the model after i iterations, i = 0 .. n_iter, every entry its model's own score
    assert trace.lower_bounds.shape == (trace.n_iter + 1,)
    assert np.array_equal(trace.lower_bounds[:-1], trace.final.lower_bounds_)
    for n, gm in trace.models.items():
        assert gm.n_iter_ == n
        assert np.isclose(gm.score(X), trace.lower_bounds[n], rtol=1e-12, atol=0), n
    assert np.all(np.diff(trace.lower_bounds) >= -1e-9)  # EM never decreases the likelihood
    # a snapshot is the state of the same run: a fresh fit stopped after n iterations agrees
    init = plot.faithful_poor_start(X)
    for n in (0, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = GaussianMixture(2, max_iter=n, tol=0.0, **init).fit(X) if n else None
        if ref is None:
            assert np.allclose(trace.models[0].means_, init["means_init"], rtol=0, atol=1e-12)
        else:
            assert np.allclose(trace.models[n].means_, ref.means_, rtol=1e-12, atol=1e-12)
            assert np.allclose(trace.models[n].covariances_, ref.covariances_, rtol=1e-12, atol=1e-12)


def test_figure_panels_curve_and_legend(faithful, tmp_path):
    X, trace = faithful
    fig = plot.faithful_em_figure(X, trace)
    key, *panels, curve = fig.axes
    titles = [ax.get_title().split("\n")[0] for ax in panels]
    assert titles == [
        "start (iteration 0)",
        "after 1 iteration",
        "after 2 iterations",
        "after 5 iterations",
        "after 10 iterations",
        "converged after 18 iterations",
    ]
    n = X.shape[0]
    for ax, (it, _) in zip(panels, sorted(trace.models.items()), strict=True):
        assert ax.get_title().endswith(f"log-likelihood {trace.lower_bounds[it] * n:.2f}")
    # the curve's axis covers iterations 0 .. 18; the off-scale start is marked and labelled
    low, high = curve.get_xlim()
    assert low < 0 and high > trace.n_iter
    texts = [t.get_text() for t in curve.texts]
    assert any(
        t.startswith(f"start (iteration 0): {trace.lower_bounds[0] * n:.2f}, off scale") for t in texts
    )
    assert curve.get_ylim()[0] > trace.lower_bounds[0] * n
    assert "converged after 18: -1130.2640" in curve.get_title()
    # the legend names the components, the means and both ellipses
    labels = [t.get_text() for t in key.get_legend().get_texts()]
    assert labels[0].startswith("component 0 (final weight 0.36)")
    assert "component mean" in labels
    assert any(label.startswith("1-sigma ellipse (39%") for label in labels)
    assert any(label.startswith("2-sigma ellipse (86%") for label in labels)
    fig.savefig(tmp_path / "em.png", dpi=60)
    assert (tmp_path / "em.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_em_progress_ends_with_the_converged_panel(X):
    """Iterations past convergence are left out instead of drawn after it (the old 'iteration 20')."""
    gm = GaussianMixture(3, random_state=0).fit(X)
    fig = plot.plot_em_progress(
        X,
        weights_init=gm.weights_,
        means_init=gm.means_,
        precisions_init=gm.precisions_,
        iterations=(0, 1, 500),
        dims=(0, 2),
    )
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes[1:-1]]
    assert titles[:2] == ["start (iteration 0)", "after 1 iteration"]
    assert len(titles) == 3 and titles[-1].startswith("converged after ")


def test_lower_bounds_without_an_off_scale_start_draw_every_point():
    ax = plot.plot_lower_bounds([-3.0, -2.0, -1.5, -1.4], mark=[0, 3])
    assert not ax.texts[0].get_text().startswith("start")  # only the marks are annotated
    assert ax.get_ylim()[0] < -3.0
