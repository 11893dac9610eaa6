"""The cache-features stage: run a frozen 2D teacher on the views and store its maps."""
