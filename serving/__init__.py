"""airloop's prediction service: FastAPI app serving the registry's champion and challenger with A/B routing."""
