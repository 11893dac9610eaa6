"""Pictures and summaries of stores and runs."""
