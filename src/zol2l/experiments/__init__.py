"""Experiment protocols built on the loop: evaluation, tuning, the paper's experiments."""
