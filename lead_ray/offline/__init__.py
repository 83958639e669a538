"""The offline stages of LEAD (spec §4): warm-up training, scoring, clustering."""
