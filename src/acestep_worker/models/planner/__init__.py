"""The 5 Hz planner LM: prompts, constrained decoding, the decode loop, and what it adds to a request."""
