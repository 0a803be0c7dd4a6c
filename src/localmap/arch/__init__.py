"""arch: architecture-specific parts of the model (only arm64 is modelled)."""
