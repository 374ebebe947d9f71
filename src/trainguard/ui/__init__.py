"""What a person sees: progress bars and end-of-run summaries."""
