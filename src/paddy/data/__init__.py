"""Competition data: the layout and its checks, corrupt images, the demo dataset, folds and presized copies."""
