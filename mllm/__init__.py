"""Oblivio's machine-learning library: corpus, reference MLLM, training, unlearning, evaluation.

Pure PyTorch + transformers + peft. Never imports Django: the web platform calls it only from
Celery tasks and services.
"""
