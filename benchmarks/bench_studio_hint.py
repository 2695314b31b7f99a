"""How long the studio takes to show a hint on a 1-megapixel photo.

    python benchmarks/bench_studio_hint.py [--repeats 10] [--side 1155x866] [--checkpoint DIR] [--threads 1]

A hint update is what the page's click handler does after a click: add the
hint, colourise the photo again (the model at its render size, the colour
transfer at full resolution: ``PhotoEditor.render``), and draw the two
pictures the browser gets (``pictures.photo_pictures``: the gray preview with the
hints marked, the result's preview). The photo is scikit-image's ``chelsea``,
turned gray and enlarged to 1155x866 (1.0 MP). Each update adds one more hint
at a new point. It prints one JSON object: the median and every time, in
seconds, of the whole update and of the colourisation alone, the median CPU
time of an update (all threads), and the load average while it ran (on a
shared machine the wall time grows with the load; the CPU time does not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data

from sacolor.inference.colorizer import Colorizer
from sacolor.studio.pictures import photo_pictures
from sacolor.studio.photo import PhotoEditor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="hint updates to time (default 10)")
    parser.add_argument("--side", default="1155x866", help="photo size WxH (default 1155x866, 1.0 MP)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: the built-in model)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); with 1 the CPU time is the work itself, which "
                        "contention from other jobs does not inflate")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = map(int, args.side.split("x"))
    colorizer = Colorizer.from_checkpoint(args.checkpoint, "cpu")
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "gray.png"
        Image.fromarray(data.chelsea()).convert("L").resize((width, height), Image.Resampling.BICUBIC).save(photo)
        editor = PhotoEditor(colorizer, photo)
        photo_pictures(editor)  # warm-up: first calls allocate
        updates, renders, cpu_times = [], [], []
        for index in range(args.repeats):
            x, y = (index * 97) % width, (index * 61) % height
            start, cpu = time.perf_counter(), time.process_time()
            editor.hints.add(x, y, "#3366cc" if index % 2 else "#c8102e")
            editor.render()
            rendered = time.perf_counter()
            photo_pictures(editor)
            updates.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
            renders.append(rendered - start)
    print(json.dumps({
        "photo": f"{width}x{height}", "megapixels": round(width * height / 1e6, 2), "repeats": args.repeats,
        "median_update_s": round(statistics.median(updates), 3), "median_colourise_s": round(statistics.median(renders), 3),
        "median_update_cpu_s": round(statistics.median(cpu_times), 3), "threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "update_s": [round(t, 3) for t in updates], "colourise_s": [round(t, 3) for t in renders],
        "render_size": list(colorizer.model_size((height, width))),
    }))


if __name__ == "__main__":
    main()
