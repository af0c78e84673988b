"""Many runs at once: which entries a command works on, every entry of a config, the GPU pool, the time plan."""
