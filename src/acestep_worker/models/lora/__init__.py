"""LoRA adapters for the DiT: references (`ref`), file formats (`formats`), where they come from
(`sources`) and how they are loaded and applied per job (`adapters`)."""
