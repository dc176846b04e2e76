"""The ACE-Step DiT as diffusers modules: loading, conditioning, attention kernels, and the sampler written to upstream's rules."""
