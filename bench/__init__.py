"""Benchmark scripts (run as files: `python bench/<name>.py`); importable for their shared helpers."""
