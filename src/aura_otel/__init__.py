"""aura-otel."""
