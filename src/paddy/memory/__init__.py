"""GPU memory of training steps: measured on CUDA or estimated on the CPU, and the accum search of probe-memory."""
