"""In-harness pretraining (DPAL, SAIP, baselines)."""
