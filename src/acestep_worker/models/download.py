"""Download the official ACE-Step 1.5 checkpoints into a checkpoint root, and verify them.

    python -m acestep_worker download --dir /app/checkpoints main base
    python -m acestep_worker download --list          (also: python -m acestep_worker.models.download ...)

`main` is the `ACE-Step/Ace-Step1.5` repository (turbo DiT, VAE, Qwen3-Embedding text encoder and
the 1.7B planner); the others are the optional sub-model repositories, each placed in a folder of
its own name, so the result is the layout upstream and the original image use.

Every file is checked against the hub's own record (SHA-256 for LFS files, the git blob id for the
rest) before the folder is moved into place: a download that was cut short or corrupted never
becomes a checkpoint folder. Python files in the repositories (upstream's remote code) are not
downloaded at all; nothing from a checkpoint is ever executed. A token, when needed, comes from
HF_TOKEN or `--token-file` (in the Docker build: a BuildKit secret).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.hf_api import RepoFile

IGNORED = ["*.py", "__pycache__/*", ".gitattributes"]


@dataclass(frozen=True)
class Component:
    repo_id: str
    folder: str | None  # target folder name under the root; None = the repo's top level folders
    description: str


COMPONENTS = {
    "main": Component("ACE-Step/Ace-Step1.5", None,
                      "turbo DiT, VAE, Qwen3-Embedding-0.6B text encoder, 1.7B planner LM"),
    "base": Component("ACE-Step/acestep-v15-base", "acestep-v15-base", "base DiT (CFG, 32-64 steps)"),
    "sft": Component("ACE-Step/acestep-v15-sft", "acestep-v15-sft", "SFT DiT"),
    "lm-0.6B": Component("ACE-Step/acestep-5Hz-lm-0.6B", "acestep-5Hz-lm-0.6B", "0.6B planner LM"),
    "lm-4B": Component("ACE-Step/acestep-5Hz-lm-4B", "acestep-5Hz-lm-4B", "4B planner LM"),
    "xl-turbo": Component("ACE-Step/acestep-v15-xl-turbo", "acestep-v15-xl-turbo", "XL turbo DiT"),
    "xl-base": Component("ACE-Step/acestep-v15-xl-base", "acestep-v15-xl-base", "XL base DiT"),
    "xl-sft": Component("ACE-Step/acestep-v15-xl-sft", "acestep-v15-xl-sft", "XL SFT DiT"),
}


# The folders the `main` repository holds (the others each fill the folder named in COMPONENTS).
MAIN_FOLDERS = ("acestep-v15-turbo", "vae", "Qwen3-Embedding-0.6B", "acestep-5Hz-lm-1.7B")


def component_for_folder(folder_name: str) -> str | None:
    """The component whose download creates a checkpoint folder of this name, if any."""
    if folder_name in MAIN_FOLDERS:
        return "main"
    return next((key for key, c in COMPONENTS.items() if c.folder == folder_name), None)


# The commit each component is downloaded at, so an image built next month bakes the same weights.
# These are the commits other projects that pin ACE-Step 1.5 publish for these repositories (the
# same hash for a repository across several independent projects); this project's build machines
# cannot reach the hub to check them, so the download verifies instead: the hub must answer the
# pinned commit, and every file's size and hash must match that commit's listing. To move a pin,
# run `python -m acestep_worker.models.download --resolve` where the hub is reachable and paste what it
# prints; `--revision` fetches another commit or branch once without editing the table.
PINNED_REVISIONS: dict[str, str | None] = {
    "main": "19671f406d603126926c1b7e2adc169acbcade22",
    "base": "e432212fec32b8965a14ffa57ae653438d6abd14",
    "sft": "c410d249e71ea9385a7b586865e65b1473e1098d",
    "lm-0.6B": "148d8ea0225bdab342ee1ae3a354275ccd60ca80",
    "lm-4B": "0a3ec94b557aea7d508da38b31cfe7341f6ff737",
    "xl-turbo": "d4a0b288b83ebb7e25a8c0b32c573c22e134e8ee",
    "xl-base": "220c1166efbdd9583eafcb12eb160594bbfcb241",
    "xl-sft": "d06de46b4622f781cf07f4a013a67d591ca52819",
}
REVISION_FILE = ".hub_revision.json"  # written into every checkpoint folder: where its files came from


class IntegrityError(RuntimeError):
    pass


def git_blob_id(path: Path) -> str:
    """The git object id of a file's content: sha1 over "blob <size>\\0" + content."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    _hash_into(digest, path)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_into(digest, path)
    return digest.hexdigest()


def _hash_into(digest, path: Path) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)


def _ignored(path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in IGNORED)


def verify(folder: Path, entries: list[RepoFile]) -> None:
    """Compare every downloaded file with the hub's size and hash; raise IntegrityError on any gap."""
    problems = []
    for entry in entries:
        if _ignored(entry.path):
            continue
        local = folder / entry.path
        if not local.is_file():
            problems.append(f"{entry.path}: missing")
        elif local.stat().st_size != entry.size:
            problems.append(f"{entry.path}: {local.stat().st_size} bytes, expected {entry.size}")
        elif entry.lfs is not None and sha256_of(local) != entry.lfs.sha256:
            problems.append(f"{entry.path}: SHA-256 differs from the hub's")
        elif entry.lfs is None and git_blob_id(local) != entry.blob_id:
            problems.append(f"{entry.path}: content differs from the hub's blob {entry.blob_id[:12]}")
    if problems:
        raise IntegrityError(f"{folder}: " + "; ".join(problems))


def download(name: str, root: Path, *, revision: str | None = None, endpoint: str | None = None,
             token: str | None = None) -> list[Path]:
    """Fetch one component into `root`, verified, and return the checkpoint folders it added."""
    component = COMPONENTS[name]
    revision = revision or PINNED_REVISIONS.get(name)
    api = HfApi(endpoint=endpoint, token=token)
    commit = api.model_info(component.repo_id, revision=revision).sha
    if revision and _is_commit(revision) and commit != revision:
        raise IntegrityError(f"{component.repo_id}: asked for commit {revision}, the hub answered {commit}")
    entries = [e for e in api.list_repo_tree(component.repo_id, revision=commit, recursive=True)
               if isinstance(e, RepoFile)]
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{name}.partial"
    snapshot_download(component.repo_id, revision=commit, local_dir=staging, endpoint=endpoint, token=token,
                      ignore_patterns=IGNORED)
    verify(staging, entries)
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
    if component.folder is not None:
        moves = [(staging, root / component.folder)]
    else:
        moves = [(item, root / item.name) for item in sorted(staging.iterdir()) if item.is_dir()]
    added = []
    for source, target in moves:
        if target.exists():
            shutil.rmtree(target)
        source.rename(target)
        (target / REVISION_FILE).write_text(json.dumps(
            {"repo_id": component.repo_id, "commit": commit, "requested": revision or "main"}) + "\n")
        added.append(target)
    shutil.rmtree(staging, ignore_errors=True)
    return added


def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def resolve(names: list[str], *, endpoint: str | None = None, token: str | None = None) -> dict[str, str]:
    """The hub's current commit of each component: what to paste into PINNED_REVISIONS."""
    api = HfApi(endpoint=endpoint, token=token)
    return {name: api.model_info(COMPONENTS[name].repo_id).sha for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acestep_worker download",
                                     description="Download and verify official ACE-Step 1.5 checkpoints.")
    parser.add_argument("components", nargs="*", help="what to fetch (default: main; --resolve: all)")
    parser.add_argument("--dir", type=Path, default=Path("checkpoints"), help="checkpoint root")
    parser.add_argument("--revision", help="a branch, tag or commit of the repositories")
    parser.add_argument("--endpoint", help="hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--token-file", type=Path, help="file holding a hub token (default: HF_TOKEN)")
    parser.add_argument("--list", action="store_true", help="list the components and exit")
    parser.add_argument("--resolve", action="store_true",
                        help="print the hub's current commit of each component (to pin them) and exit")
    args = parser.parse_args(argv)
    if args.list:
        for key, component in COMPONENTS.items():
            pin = (PINNED_REVISIONS.get(key) or "")[:12] or "unpinned"
            print(f"{key:10} {component.repo_id:34} {pin:13} {component.description}")
        return 0
    unknown = [c for c in args.components if c not in COMPONENTS]
    if unknown:
        parser.error(f"unknown components {unknown}; choose from {', '.join(COMPONENTS)}")
    token = args.token_file.read_text().strip() if args.token_file else None
    if args.resolve:
        for key, commit in resolve(args.components or list(COMPONENTS), endpoint=args.endpoint,
                                   token=token).items():
            print(f'    "{key}": "{commit}",')
        return 0
    for name in args.components or ["main"]:
        for folder in download(name, args.dir, revision=args.revision, endpoint=args.endpoint, token=token):
            print(f"verified {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
