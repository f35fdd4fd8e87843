"""tsrnn.reservoir (see the package docstring of tsrnn)."""
