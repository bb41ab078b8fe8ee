"""Benchmarks for wsgisession: per-request cost against a bare app and against its peers.

Run ``python -m benchmarks`` from the repository root after
``pip install -e .[bench]``; ``python -m benchmarks --help`` lists the modes
(in-process table, commit path, gunicorn throughput, concurrency probe).
Nothing here is imported by ``wsgisession`` itself.
"""
