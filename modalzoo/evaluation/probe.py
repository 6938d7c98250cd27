"""The linear probe every modality's probe report fits: a logistic regression on standardized frozen features."""

from __future__ import annotations

import torch


def probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0, max_iter: int = 5000) -> float:
    """Top-1 test accuracy of a logistic regression on standardized features (lbfgs, fixed seed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(torch.as_tensor(train_x).numpy(), list(torch.as_tensor(train_y).tolist()))
    return float(probe.score(torch.as_tensor(test_x).numpy(), list(torch.as_tensor(test_y).tolist())))
