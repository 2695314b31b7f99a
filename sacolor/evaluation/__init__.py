"""Scoring colourisations: per-image metrics (``metrics``) and film flicker
without a colour original (``flicker``), and per-category means of per-image
scores (``categories``)."""
