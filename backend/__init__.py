"""LayerFusion backend: the HTTP server, its job queue and worker, the pipeline and model loading."""

__version__ = "0.1.0"
