"""paddy: a command-line trainer for Kaggle image competitions, built on fastai and timm."""

from paddy.core.versions import paddy_version

__version__ = paddy_version()
