"""The offline stages of LEAD (ALGORITHM.md §4): warm-up training, scoring, clustering."""
