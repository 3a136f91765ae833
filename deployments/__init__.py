"""qwen3-search server side: the model engine and the Ray Serve deployments."""
