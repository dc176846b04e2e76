"""Reaching other machines on a caller's behalf: the URL rules every fetch obeys, and S3-compatible buckets."""
