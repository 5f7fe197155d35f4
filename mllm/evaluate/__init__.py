"""Greedy and teacher-forced answers, task metrics, and per-group tables."""
