"""The command lines: ``sacolor-train`` (``train``), ``sacolor-infer`` (``infer``)
and ``sacolor-eval`` (``evaluate``). Each parses its options and calls the
library; no library module imports this package."""
