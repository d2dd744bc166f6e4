"""The design layer: validated responses and components (:mod:`.data`), formulas and design
matrices (:mod:`.design`)."""
