"""Getting finished songs to the caller: files written all-or-nothing, and inline base64 under a budget."""
