"""The command lines: ``sacolor-train`` (``train``), ``sacolor-infer`` (``infer``),
``sacolor-eval`` (``evaluate``) and ``sacolor-studio`` (``studio``). Each parses its
options and calls the library; no library module imports this package."""
