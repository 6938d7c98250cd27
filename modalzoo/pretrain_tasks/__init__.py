"""Pretraining tasks: each is a target (loss + metrics) and the batch transform that prepares its inputs."""
