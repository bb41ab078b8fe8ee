"""Session stores, one module per medium."""
