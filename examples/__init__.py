"""Runnable examples; each is imported and driven by a test in tests/."""
