"""Training: optimizer and schedules, the trainer loop, checkpoints, metric logging."""
