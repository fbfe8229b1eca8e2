"""gov's own judge: the bundled (a)/(b) rubric, an OpenAI-compatible client, and the runner that
turns transcripts into an episode-level divergence report `gov ingest` accepts unchanged."""
