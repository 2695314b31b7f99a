"""Scoring colourisations: per-image metrics (``metrics``) and film flicker
without a colour original (``flicker``)."""
