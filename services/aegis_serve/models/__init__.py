"""Model loading: Sentence-Transformers dirs, the embedder, and weights shipped in packages."""
