"""Prefect flows: orchestration only, no stage logic (that lives in tasks/ and babelflow/)."""
