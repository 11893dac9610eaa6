"""Stores, run directories, checkpoints and the dataset record: everything that reads or writes disk or object storage."""
