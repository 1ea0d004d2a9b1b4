"""One module per pipeline stage: read params, call the library, write outputs atomically.

Each is runnable as `python -m tasks.<stage>` (what dvc.yaml calls) and exposes `run(params, paths)`.
"""
