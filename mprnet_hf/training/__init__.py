"""Training MPRNet: datasets (paired folders and synthetic degradations) and the accelerate training loop."""
