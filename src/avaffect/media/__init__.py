"""Recordings: probing and decoding video, audio extraction and wav files, and the time grids laid on them."""
