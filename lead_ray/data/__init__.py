"""Reading instruction corpora (formats.py) and the Ray Data ingest pipeline (ingest.py)."""
