"""Synthetic, annotated scans of a fictional currency's notes (Pillow + numpy).

    design.py    denominations, palettes, layouts; per-denomination templates rendered once
    signs.py     tell-tale signs of a counterfeit and their severities, in physical terms
    capture.py   the POS scanner's capture conditions and presets (clean, default, harsh)
    render.py    note spec -> note pixels -> scan + annotation
    dataset.py   many scans, in parallel, to a folder or any sink, with a JSON-lines manifest
"""

from models.synth.capture import PRESETS, SCAN_H, SCAN_W
from models.synth.design import DENOMINATIONS
from models.synth.render import (
    GENERATOR_VERSION,
    NoteSpec,
    encode_jpeg,
    make_scans,
    render_note,
    render_scan,
    sample_note,
)
from models.synth.signs import PHYSICAL, SEVERITIES, SIGN_NAMES

__all__ = ["DENOMINATIONS", "GENERATOR_VERSION", "PHYSICAL", "PRESETS", "SCAN_H", "SCAN_W", "SEVERITIES",
           "SIGN_NAMES", "NoteSpec", "encode_jpeg", "make_scans", "render_note", "render_scan", "sample_note"]
