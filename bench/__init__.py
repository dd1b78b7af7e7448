"""Benchmarks (run as scripts: ``python bench/<name>.py``), and the links they share
with the tests (``delay_link``)."""
