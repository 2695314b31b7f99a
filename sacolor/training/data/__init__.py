"""Training data: RGB <-> Lab (``lab``), screening candidate images (``screening``),
the image dataset (``dataset``), cached video frames (``frame_cache``), train/test
splits (``splits``) and the resumable sampler (``sampler``).

Datasets yield ``{"L": (1, H, W), "ab": (2, H, W), "path": str}``, both
normalised (``lab.normalize_l`` / ``lab.normalize_ab``). Reading image and
video files is ``sacolor.io``'s job.
"""
