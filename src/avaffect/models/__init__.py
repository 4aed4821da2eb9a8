"""Models trained on the front-end's embeddings: temporal families, KELM on functionals, static and PDEM
fine-tuning."""
