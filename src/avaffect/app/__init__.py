"""The command line: `avaffect predict` on any video, from a model bundle or a zero-shot pretrained model."""
