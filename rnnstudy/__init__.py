"""rnnstudy: gradient flow and memory length in recurrent networks."""

__version__ = "0.1.0"
