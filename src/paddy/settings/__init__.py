"""What a run is asked to do: the entry and its defaults, the accum rule, typed checks, config files, budgets."""
