"""Putting finished runs together: out-of-fold CV scores and fitted weights, checked averages, paddy predict."""
