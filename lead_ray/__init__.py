"""lead-ray: LEAD iterative data selection for LLM instruction tuning, on Ray."""

__version__ = "0.1.0"
