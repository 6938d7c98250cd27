"""Evaluation of a finished (or running) run: validation metrics plus task-specific reports."""
