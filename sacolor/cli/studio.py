"""``sacolor-studio``: serve the studio page on this machine.

    sacolor-studio                     # http://127.0.0.1:7860, opens the browser
    sacolor-studio --port 8000 --no-browser --checkpoint checkpoints/photos

The page needs Gradio (the ``studio`` extra); without it the command says what
to install. It binds 127.0.0.1 unless ``--host`` says otherwise, keeps every
session's files in a private temporary folder and removes them when the tab
closes and when the server stops.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence

from .common import EXIT_OK, EXIT_USAGE, add_model_arguments, positive_int

INSTALL_HINT = ('sacolor-studio needs the studio extra (Gradio): pip install "sacolor[studio]", '
                'or from a clone: pip install --no-build-isolation -e ".[studio]"')


def positive_mb(text: str) -> float:
    """argparse type: a size in MB > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of MB > 0; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``sacolor-studio``."""
    parser = argparse.ArgumentParser(
        prog="sacolor-studio",
        description="Colourise photos and films in the browser: click a point, pick its colour, the result follows. "
        "Serves a local web page.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    add_model_arguments(parser)
    parser.add_argument("--no-browser", action="store_true", help="do not open the page in a web browser")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for the model and the colour transfer (default: torch's, as sacolor-infer, "
                        "whose files the page's then equal byte for byte). On a CPU busy with other jobs --threads 1 "
                        "answers clicks far sooner (on this project's shared 2-core CPU a hint update on a 1 MP photo "
                        "took 0.3 s with one thread, 3 s with two); its files then equal those of "
                        "OMP_NUM_THREADS=1 sacolor-infer")
    parser.add_argument("--max-upload-mb", type=positive_mb, default=500.0, metavar="N",
                        help="largest photo or film the page accepts, in MB (default 500)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sacolor-studio``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if importlib.util.find_spec("gradio") is None:
        print(f"sacolor-studio: error: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    import torch

    from ..inference.colorizer import Colorizer
    from ..studio.sessions import SessionStore

    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        colorizer = Colorizer.from_checkpoint(
            args.checkpoint, args.device, args.render_size, args.chroma_gain, args.chroma_floor
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"sacolor-studio: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not colorizer.accepts_hints:
        print("sacolor-studio: warning: this model takes no colour hints: the page colourises, but clicks on it "
              "are refused; use a checkpoint of --netG efficientnet_unet (the built-in model is one)", file=sys.stderr)
    store = SessionStore()
    # Gradio keeps its copies of uploads and served files here too, so they go when the server stops.
    os.environ["GRADIO_TEMP_DIR"] = str(store.root / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_OK))  # run the cleanup below on `kill` too
    try:
        from ..studio.page import CSS, build

        page = build(colorizer, store, args.max_upload_mb)
        where = "this machine only" if args.host in ("127.0.0.1", "localhost", "::1") else "the network"
        print(f"sacolor-studio: serving on http://{args.host}:{args.port} ({where}; --host changes it); "
              f"files in {store.root} until it stops. Ctrl+C stops it.", file=sys.stderr, flush=True)
        page.queue(default_concurrency_limit=4).launch(
            server_name=args.host, server_port=args.port, inbrowser=not args.no_browser, show_error=True,
            max_file_size=int(args.max_upload_mb * 2**20), quiet=True, footer_links=[], css=CSS,
        )
    except KeyboardInterrupt:
        pass
    finally:
        store.close_all()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
