"""Development tools: the tiny random-weight checkpoints and the parity check against upstream's tensors."""
