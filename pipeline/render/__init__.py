"""The render stage: project points into depth views (fixed or augmented draws)."""
