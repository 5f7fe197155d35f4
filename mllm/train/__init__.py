"""Encoding records, the training loop (full fine-tune or LoRA) and training jobs / retrain oracle."""

#: The largest learning rate a training, unlearning or relearning run accepts (no recipe comes near it;
#: above it AdamW's update overflows fp32 weights or makes them NaN).
MAX_LR = 1.0
