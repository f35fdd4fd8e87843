"""tsrnn.ops (see the package docstring of tsrnn)."""
