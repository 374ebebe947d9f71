"""trainguard: train language models through multi-stage pipelines that watch themselves."""

__version__ = "0.1.0"
