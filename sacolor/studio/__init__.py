"""``sacolor-studio``: a local web page where people click to give colour hints on photos and films.

``photo`` and ``film`` hold what one session is colourising and call the same
library code as the command lines; ``sessions`` keeps each browser session's
files apart; ``pictures`` draws what the page shows of them; ``page`` is the
Gradio page and ``sacolor.cli.studio`` the command. Only ``page`` imports
Gradio (the ``studio`` extra).
"""
