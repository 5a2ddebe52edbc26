"""The HTTP layer: what stands between a client and the models."""
