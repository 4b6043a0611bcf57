"""Scoring outside the prediction service: ``batch`` scores whole inputs for readmission_batch_score."""
