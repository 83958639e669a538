"""The quality benchmark: does lead-ray select better data than random at equal compute (issue 33). Entry points:
run.py (train and evaluate, report), tables.py (docs tables), power.py, mmlu_rescore.py, mmlu_format.py."""
