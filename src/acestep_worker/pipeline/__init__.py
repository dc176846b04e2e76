"""One generation, top to bottom: the resolved plan, the planner's pass, the DiT's inputs, the synthesizer."""
