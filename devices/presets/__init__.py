"""Device presets shipped with devsim: ``NAME.yaml`` files, each citing its source.

Found by name (``preset: NAME``) from any config through the ``devsim.presets`` entry
point that names this package.
"""
