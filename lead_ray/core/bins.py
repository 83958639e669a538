"""Difficulty arms from IFD (ALGORITHM.md §4.4, §12). Pure numpy; no Ray.

An arm is an interval of IFD; `edges` are its inner boundaries and a value v belongs to arm
searchsorted(edges, v, side="right"): the number of edges ≤ v. Assignment is a function of the value, so
tied values always share an arm.

* `kmeans` (the paper): edges halfway between sorted 1-D k-means centroids. Arms follow the density of IFD,
  which on real pools gives arms of very uneven size (27 to 1,370 samples in docs/BENCHMARKS.md), and EXP3 pulls
  a small arm as often as a big one.
* `quantile` (lead-ray's remedy): edge j is the value at rank ⌊j·n/K⌋ of the sorted values, so with distinct
  values every arm holds ⌊n/K⌋ or ⌈n/K⌉ samples; repeated edges (many ties) are merged, giving fewer arms.
"""

from __future__ import annotations

import numpy as np


def kmeans_edges(centroids: np.ndarray) -> np.ndarray:
    """Midpoints between sorted centroids: nearest-centroid assignment (a value exactly halfway: the upper arm)."""
    centroids = np.sort(np.asarray(centroids, np.float64))
    return (centroids[1:] + centroids[:-1]) / 2


def quantile_edges(values: np.ndarray, k: int) -> np.ndarray:
    """Inner edges of K equal-count bins of `values` (fewer bins when ties leave fewer distinct edges)."""
    ordered = np.sort(np.asarray(values, np.float64))
    n = len(ordered)
    if n == 0 or k <= 1:
        return np.zeros(0)
    edges = np.unique(ordered[(np.arange(1, k) * n) // k])
    return edges[edges > ordered[0]]  # an edge at the minimum would leave the first arm empty


def assign(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Arm of each value: the number of edges at or below it."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(values, np.float64), side="right").astype(np.int16)
