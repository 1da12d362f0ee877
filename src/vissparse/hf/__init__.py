"""HuggingFace vision-language models: inputs, loading and the pruning pipeline."""
