"""The engine: one training loop with plug-in objectives, sources and sinks; checkpoints and resume."""
