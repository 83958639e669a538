"""`selection.delta: anchor` (issue 33, design d): the standardisation of each push, and a run that uses it. The
ghost products against autograd are in test_ghost.py."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st


@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=40),
    st.floats(1e-3, 1e3),
    st.floats(0, 4),
)
def test_anchor_delta_keeps_the_order_of_alignment_whatever_its_scale(products, scale, weight):
    """`selection.delta: anchor`: standardised over the push, the values keep the products' order, ignore their
    scale (gradients shrink over training), have mean 0 and the losses' spread times the weight."""
    from lead_ray.core.idu import anchor_delta

    p = np.asarray(products)
    losses = np.linspace(1.0, 3.0, len(p))
    got = anchor_delta(p, losses, weight)
    if p.std() < 1e-6:
        return
    np.testing.assert_allclose(got, anchor_delta(p * scale, losses, weight), rtol=1e-3, atol=1e-5)
    assert abs(got.mean()) < 1e-4 * max(1.0, weight)
    assert got.std() == pytest.approx(weight * losses.std(), rel=1e-3, abs=1e-6)
    if weight > 0:
        assert np.all(np.diff(got[np.argsort(p, kind="stable")]) >= -1e-5)
    assert not anchor_delta(p[:1], losses[:1], weight).any()  # one sample: nothing to compare it with


def test_anchor_delta_runs_per_sample_from_round_one_and_counts_the_anchor_forwards(ray_session, tmp_path):
    """`selection.delta: anchor` on the toy pool, with the learnable arm's pairs as the anchor: every round (the
    first too: g_anchor needs no earlier round) gets per-sample values, standardised (mean 0, spread of the
    round's losses); the anchor's forward passes are counted apart from the pool's. Without anchor.data the run
    is refused before any worker starts, naming the key."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lead_ray.config import ConfigError
    from lead_ray.online.run import run
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.delta, cfg.selection.max_rounds, cfg.selection.anchor_batch = "anchor", 3, 5
    with pytest.raises(ConfigError, match="anchor.data"):
        run(cfg, run_dir=str(tmp_path / "refused"))
    pong = [
        {
            "id": f"a{i}",
            "messages": [{"role": "user", "content": f"ping x{i}"}, {"role": "assistant", "content": "pong"}],
        }
        for i in range(12)
    ]
    (tmp_path / "anchor").mkdir()
    pq.write_table(pa.Table.from_pylist(pong), tmp_path / "anchor" / "part-0.parquet")
    cfg.anchor.data = str(tmp_path / "anchor")
    run(cfg, run_dir=str(tmp_path / "run-anchor"))
    rounds = pq.read_table(tmp_path / "run-anchor" / "rounds.parquet").to_pylist()
    assert [r["delta_mode"] for r in rounds] == ["anchor"] * len(rounds) == ["anchor"] * 3
    for r in rounds:
        assert r["forward_samples"] - r["padding_samples"] == r["size"] == r["trained"]
        assert r["anchor_forward_samples"] == 5 and 0 < r["anchor_s"] < r["train_s"]
        assert abs(r["delta_sample_mean"]) < 1e-5 and r["delta_sample_sd"] > 0
