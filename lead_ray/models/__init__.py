"""Models: the loader (load.py), the one chat template (template.py), the one per-sample loss (loss.py)."""
