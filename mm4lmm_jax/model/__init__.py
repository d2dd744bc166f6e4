"""The design layer: validated responses and components (:mod:`._data`), formulas and design
matrices (:mod:`._design`)."""
