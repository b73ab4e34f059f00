"""`harness grid`: suites of cells, planned against the result store and run by an executor plugin."""
