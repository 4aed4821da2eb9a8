"""avaffect: the SUN team's ABAW 2024 audio-visual emotion recognition system as a library."""

__version__ = "0.1.0"
