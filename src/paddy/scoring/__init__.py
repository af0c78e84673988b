"""Scores of every target kind (the competitions' metrics), thresholds and cut-points: numpy and scikit-learn."""
