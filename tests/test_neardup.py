"""Near-duplicates: the earlier-neighbour rule (pure), and the partitioned search against the single one (Ray)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_ray.config import load_config
from lead_ray.offline.neardup import (
    earlier_matches,
    exact_earlier,
    find_near_duplicates,
    hnsw_earlier,
    search_method,
    unit_flags,
)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), st.integers(0, 10_000))
def test_earlier_matches_is_the_best_earlier_neighbour_above_the_threshold(n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n, (n, k))
    sim = np.round(rng.random((n, k)), 1)  # coarse: ties happen
    rows, of, best = earlier_matches(labels, sim, 0.5)
    expected = {}
    for i in range(n):
        earlier = [(s, j) for j, s in zip(labels[i], sim[i]) if j < i and s >= 0.5]
        if earlier:
            expected[i] = max(earlier, key=lambda p: (p[0], -p[1]))
    assert rows.tolist() == sorted(expected)
    got = [(float(s), int(j)) for s, j in zip(best, of)]
    assert got == [(float(expected[i][0]), int(expected[i][1])) for i in rows]


def scored_units_arrays(units: int = 3, per_unit: int = 400, dim: int = 16, seed: int = 0):
    """(units, trainable, x): clustered unit vectors, every 10th a near copy of an earlier one."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    x = centres[rng.integers(0, 8, units * per_unit)] + 0.6 * rng.normal(size=(units * per_unit, dim))
    planted = {}
    for i in range(50, len(x), 10):
        j = int(rng.integers(0, i - 40))
        x[i] = x[j] + 1e-3 * rng.normal(size=dim)
        planted[i] = j
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return units, rng.random(len(x)) > 0.05, x


def scored_units(folder, units: int = 3, per_unit: int = 400, dim: int = 16, seed: int = 0):
    """Unit files of scored_units_arrays; (paths, trainable, x)."""
    _, trainable, x = scored_units_arrays(units, per_unit, dim, seed)
    paths = []
    folder.mkdir(parents=True)
    for u in range(units):
        rows = slice(u * per_unit, (u + 1) * per_unit)
        table = pa.table(
            {
                "id": [f"p{i:05d}" for i in range(rows.start, rows.stop)],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].ravel()), dim),
                "trainable": trainable[rows],
            }
        )
        paths.append(str(folder / f"u{u}.parquet"))
        pq.write_table(table, paths[-1])
    return paths, trainable, x


def exact_pairs(x: np.ndarray, trainable: np.ndarray, threshold: float) -> dict[int, int]:
    """Brute force: each trainable point's most similar earlier trainable point at or above the threshold."""
    points = np.flatnonzero(trainable)
    sim = x[points] @ x[points].T
    pairs = {}
    for a in range(len(points)):
        earlier = np.flatnonzero(sim[a, :a] >= threshold)
        if len(earlier):
            pairs[int(points[a])] = int(points[earlier[np.argmax(sim[a, earlier])]])
    return pairs


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 9), st.integers(0, 10_000))
def test_exact_search_is_the_brute_force_rule_across_blocks(n, block, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    x[rng.random(n) < 0.3] = x[0]  # exact copies of the first point: ties go to the earliest
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    found, of, sim = exact_earlier(x, 0.9, block=block)
    dots = x @ x.T
    expected = {i for i in range(1, n) if dots[i, :i].max() >= 0.9}
    assert found.tolist() == sorted(expected)
    for i, j, s in zip(found, of, sim):  # the most similar earlier point (copies: equal up to float rounding)
        assert j < i and abs(s - dots[i, j]) < 1e-5 and dots[i, j] >= dots[i, :i].max() - 1e-5


def test_hnsw_and_exact_search_flag_the_brute_force_points():
    units, trainable, x = scored_units_arrays()
    points = np.flatnonzero(trainable)
    expected = {int(np.flatnonzero(points == i)[0]) for i in exact_pairs(x, trainable, 0.99)}
    cfg = load_config(None, ["cluster.near_dup_threshold=0.99"])
    assert set(exact_earlier(x[points], 0.99)[0].tolist()) == expected
    assert set(hnsw_earlier(x[points], cfg.cluster)[0].tolist()) == expected
    assert [search_method("auto", n) for n in (2, 32_768, 32_769)] == ["exact", "exact", "hnsw"]


def flagged(out) -> dict[str, str]:
    t = pq.read_table(out / "near_dups.parquet")
    return dict(zip(t["id"].to_pylist(), t["near_dup_of"].to_pylist()))


def test_partitioned_search_finds_the_planted_pairs_and_each_unit_reads_its_own(ray_session, tmp_path):
    units, trainable, x = scored_units(tmp_path / "units")
    expected = {f"p{i:05d}" for i in exact_pairs(x, trainable, 0.99)}  # the flagged points, by brute force
    assert len(expected) >= 100
    results = {}
    for rows in (10_000, 300):  # one search over all 1,140-odd points; then 4 partitions
        cfg = load_config(None, ["cluster.near_dup_threshold=0.99", f"cluster.near_dup_partition_rows={rows}"])
        out = tmp_path / f"out-{rows}"
        stats = find_near_duplicates(units, trainable, cfg.cluster, 0, out)
        results[rows] = flagged(out)
        assert stats["points"] == int(trainable.sum()) and stats["near_duplicates"] == len(results[rows])
        assert stats["near_dup_partitions"] == (1 if rows == 10_000 else 4)
        assert stats["near_dup_largest_partition"] <= stats["points"]
        for dup, of in results[rows].items():  # a real pair, the later one flagged (among near-equal copies,
            i, j = int(dup[1:]), int(of[1:])  # which earlier one is named rests on float rounding)
            assert j < i and trainable[i] and trainable[j] and x[i] @ x[j] >= 0.99 - 1e-5
    assert set(results[10_000]) == expected  # the single search flags exactly the brute-force points
    recall = len(set(results[300]) & expected) / len(expected)
    assert recall >= 0.9 and set(results[300]) <= expected
    column = unit_flags(tmp_path / "out-300", 1, 400).to_pylist()  # unit 1's rows only, by row
    assert {f"p{400 + r:05d}": v for r, v in enumerate(column) if v} == {
        k: v for k, v in results[300].items() if 400 <= int(k[1:]) < 800
    }
