"""Colourising with a trained generator: the ``Colorizer`` (``colorizer``),
photos of any size (``photo``), colour hints (``hints``), films with hints
carried through shots (``film``) and temporal chroma stabilisation (``temporal``)."""
