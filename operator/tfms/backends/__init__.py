"""All I/O with Google Cloud; only our own error types leave this package."""
