"""Before loading: every model folder the settings name must exist, or one sentence says which is
missing and the exact command that downloads it."""

from __future__ import annotations

from pathlib import Path

from ..errors import AceStepError, CheckpointError
from .download import component_for_folder

# Written into every folder of a tiny random-weight tree (dev/tiny.py): what loads from one makes noise.
RANDOM_WEIGHTS_MARKER = "random_weights.json"


class MissingModelFolder(CheckpointError):
    def __init__(self, path: Path, message: str):
        AceStepError.__init__(self, message)  # the message names every path already
        self.path = str(path)


# What each folder is, in the words of the variable that chooses it.
ROLES = {"dit": ("DiT model", "ACESTEP_CONFIG_PATH"), "vae": ("VAE", "ACESTEP_VAE_PATH"),
         "text_encoder": ("text encoder", "ACESTEP_TEXT_ENCODER_PATH"),
         "lm": ("planner LM", "ACESTEP_LM_MODEL_PATH")}


def require_model_folders(folders: dict[str, Path | None]) -> None:
    """`folders` maps a ROLES key to the folder the engine is about to load (None: not wanted)."""
    missing = {role: path for role, path in folders.items() if path is not None and not Path(path).is_dir()}
    if not missing:
        return
    described = [f"the {ROLES[role][0]} folder {path} ({ROLES[role][1]})" for role, path in missing.items()]
    by_root: dict[Path, list[str]] = {}
    unknown = []
    for path in missing.values():
        component = component_for_folder(Path(path).name)
        if component is None:
            unknown.append(str(path))
        elif component not in by_root.setdefault(Path(path).parent, []):
            by_root[Path(path).parent].append(component)
    commands = [f"python -m acestep_worker download --dir {root} {' '.join(names)}" for root, names in by_root.items()]
    advice = []
    if commands:
        advice.append(f"download {'it' if len(missing) == 1 else 'them'} with: " + "; ".join(commands))
    if unknown:
        advice.append(f"{'or ' if commands else ''}point the variable at an existing folder")
    if len(missing) == 1:
        head = f"{described[0]} does not exist"
    else:
        head = f"these model folders do not exist: {', '.join(described)}"
    raise MissingModelFolder(next(iter(missing.values())), f"{head}; {' '.join(advice)}")
