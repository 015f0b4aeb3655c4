"""Task adapters, one module per family."""
