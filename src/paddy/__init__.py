"""paddy: a command-line trainer for Kaggle image competitions, built on fastai and timm."""

__version__ = "0.1.0"
