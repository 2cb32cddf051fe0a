"""Fine-tuning new model versions."""
