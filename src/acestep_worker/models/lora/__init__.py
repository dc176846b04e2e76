"""LoRA adapters for the DiT: file formats (`formats`, `lycoris`), where they come from (`sources`), and how they
are loaded and applied per job (`adapters`, `kron`, `merged`). A request names them in `loras` (schema/lora_refs.py)."""
