"""One job from submission to delivered songs, the same for every door: deadline, audio inputs, checks, generation, files."""
