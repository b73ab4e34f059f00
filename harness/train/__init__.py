"""Training: the core drives a method's `harness.TrainingRecipe` step by step.

engine (loop, checkpoints, resume, log, evaluation schedule) · context (what a recipe gets: AMP,
data-parallel gradient averaging, batch sharding, the step loader) · protocol (`SingleModelRecipe`)
· samplers and augment (batches as pure functions of seed and step) · loader (DataLoader workers) ·
rng (global RNG capture) · distributed (torchrun) · ema, pool (stateful helpers) · evaluation (the
runner, during training).
"""
