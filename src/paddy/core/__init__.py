"""Bottom layer: one error type, atomic files, library versions, processes and ranks, interrupts; no torch."""
