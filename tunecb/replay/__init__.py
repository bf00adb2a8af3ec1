"""Carry a finished trial on: retrain it on all the data, rerun it, evaluate it on test data."""
