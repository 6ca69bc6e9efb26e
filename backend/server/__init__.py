"""The LayerFusion HTTP service: aiohttp app, auth, job queue with one worker thread, results store."""
