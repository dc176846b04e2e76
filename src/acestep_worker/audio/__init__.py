"""Audio in and out: decoding what users send, where it comes from, trimming, and encoding songs to files."""
