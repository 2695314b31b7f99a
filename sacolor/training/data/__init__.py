"""Training data: screening candidate images (``screening``), the image dataset
(``dataset``), cached video frames (``frame_cache``), train/test splits
(``splits``) and the resumable sampler (``sampler``).

Photographs from Debian packages: Qt resource files (``rcc``), the images a
package holds (``package_images``), their licences (``licences``), the rule that
tells photographs from drawings and cut-outs (``photo_rule``), and the manifest
of training and held-out photos (``manifest``, ``photos.csv``).

Datasets yield ``{"L": (1, H, W), "ab": (2, H, W), "path": str}``, both
normalised (``sacolor.colour.normalize_l`` / ``normalize_ab``). Reading image
and video files is ``sacolor.io``'s job.
"""
