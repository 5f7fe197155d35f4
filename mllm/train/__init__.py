"""Encoding records, the training loop (full fine-tune or LoRA) and training jobs / retrain oracle."""
