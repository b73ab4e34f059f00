"""Evaluation: cells (one method × dataset × metrics), the result store, and what serves them."""
