"""The audio front-end: vocal separation, voice activity, augmentation and audio embeddings."""
