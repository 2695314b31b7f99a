"""Media files in and out, shared by training, inference and evaluation: which
files are images or videos and finding them (``paths``), reading and writing
images (``images``), decoding, sampling and re-encoding videos (``video``)."""
