"""The guard: detectors read each step's metrics and emit alerts; policies turn alerts into actions."""
