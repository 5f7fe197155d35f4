"""Reference tiny LLaVA, locally trained tokenizer, local checkpoint loader, artifacts, LoRA."""
