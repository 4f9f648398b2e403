"""Encoder interop: Hugging Face SigLIP vision models <-> big_vision-named ViT params."""
