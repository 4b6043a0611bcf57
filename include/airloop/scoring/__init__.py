"""Scoring outside the prediction service: ``batch`` scores whole inputs for each model's <model>_batch_score."""
