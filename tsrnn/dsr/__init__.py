"""tsrnn.dsr (see the package docstring of tsrnn)."""
