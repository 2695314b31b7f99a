"""``sacolor-eval --json``'s per-image rows, averaged per category: an image's
category is the name of the folder it is in (what ``scripts/prepare_photos.py``
writes: ``test/<category>/<name>.png``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def by_category(images: list[dict]) -> dict[str, dict]:
    """{category: {row: {metric: mean}, "n": count}} from ``summary["images"]``, categories sorted."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for image in images:
        groups[Path(image["path"]).parent.name].append(image)
    result = {}
    for category, rows in sorted(groups.items()):
        means: dict = {"n": len(rows)}
        for row in (key for key in rows[0] if key != "path"):
            means[row] = {metric: sum(r[row][metric] for r in rows) / len(rows) for metric in rows[0][row]}
        result[category] = means
    return result
