"""Presets of the example FeFET plugin (found by devsim through the ``devsim.presets``
entry point that names this package)."""
