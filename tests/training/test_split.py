"""Group-aware split: reproducible, no patient in two parts, positive rate preserved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.training.split import group_split


def patients_frame(n_patients: int, rate: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    encounters = rng.integers(1, 5, n_patients)
    patient = np.repeat(np.arange(1, n_patients + 1), encounters)
    return pd.DataFrame({"patient_nbr": patient, "y": (rng.random(len(patient)) < rate).astype(int)})


@pytest.mark.property
@settings(max_examples=25, deadline=None)
@given(
    n_patients=st.integers(min_value=300, max_value=2000),
    rate=st.floats(min_value=0.08, max_value=0.5),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    test_size=st.sampled_from([0.2, 0.25, 0.3]),
)
def test_split_is_reproducible_disjoint_by_patient_and_keeps_the_class_ratio(n_patients, rate, seed, test_size):
    frame = patients_frame(n_patients, rate, seed)

    a = group_split(frame, "y", "patient_nbr", test_size, 0.15, seed)
    b = group_split(frame, "y", "patient_nbr", test_size, 0.15, seed)

    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    assert sorted(np.concatenate([a.train, a.validation, a.test]).tolist()) == list(range(len(frame)))
    groups = [set(frame["patient_nbr"].iloc[getattr(a, p)]) for p in ("train", "validation", "test")]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    overall = frame["y"].mean()
    for part in ("train", "validation", "test"):
        assert abs(frame["y"].iloc[getattr(a, part)].mean() - overall) < 0.05
    assert abs(len(a.test) / len(frame) - test_size) < 0.1


def test_different_seeds_give_different_splits():
    frame = patients_frame(1000, 0.2, 1)

    assert not np.array_equal(
        group_split(frame, "y", "patient_nbr", 0.2, 0.15, 1).test,
        group_split(frame, "y", "patient_nbr", 0.2, 0.15, 2).test,
    )


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="invalid split sizes"):
        group_split(patients_frame(50, 0.2, 1), "y", "patient_nbr", 0.6, 0.5, 1)
