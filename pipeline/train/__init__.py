"""The train stage: pre-training from the cached stores."""
