"""Text corpora that ship inside system or registry packages (no dataset hub here)."""
