"""Model-feature frames of readmission's synthetic stream, shared by the drift tests."""

from __future__ import annotations

import pandas as pd

from airloop.usecases.readmission import synthetic
from airloop.usecases.readmission import transform as tf


def synthetic_features(n: int, seed: int, covariate_drift: float = 0.0) -> pd.DataFrame:
    """The model features of ``n`` generated encounters (``covariate_drift`` moves the inputs' distribution)."""
    raw = synthetic.generate(n, seed=seed, covariate_drift=covariate_drift)
    return tf.features_from_frame(tf.prepare(raw), tf.default_spec())
