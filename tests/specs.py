"""The model specs the tests use, read from the repository's ``models/`` folder like the product does."""

from __future__ import annotations

from pathlib import Path

from airloop.spec import load_spec

MODELS = Path(__file__).resolve().parents[1] / "models"
READMISSION = load_spec(MODELS / "readmission.yaml")
