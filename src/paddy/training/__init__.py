"""Training one run with fastai and timm: plan, learner, schedule, checkpoints, EMA, TTA, saved models, pictures."""
