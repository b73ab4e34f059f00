"""Training: the engine that drives a method's recipe, with checkpointing and resume."""
