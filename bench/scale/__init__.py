"""Scale: what each stage holds at 1M-10M synthetic samples (run.py), and LEAD against re-scoring a 20k pool
(rescore.py)."""
