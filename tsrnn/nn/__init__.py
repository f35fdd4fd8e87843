"""tsrnn.nn (see the package docstring of tsrnn)."""
