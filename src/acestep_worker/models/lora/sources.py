"""Where an adapter comes from, turned into a local file or folder and its content hash.

* `name` / `path`: a file or folder inside `ACESTEP_LORA_DIR` (a name may omit `.safetensors`);
  nothing outside that folder is reachable, symlinks included: the adapter's `root` is that folder,
  and every file of it that is read (its weights, its config) must resolve inside it (spec.confined).
* `url`: an https URL, downloaded once with a byte cap (ACESTEP_MAX_LORA_MB) through the same
  private-network checks as audio inputs, and kept in ACESTEP_LORA_CACHE_DIR under its SHA-256.
* `repo`: a hub repository id (`owner/name`, optionally `owner/name:file.safetensors`), fetched with
  huggingface_hub (safetensors and JSON only) into the same cache.

The content hash of a folder is the hash of its weights file: two copies of one adapter are one
adapter, whatever their names. `locate` takes the job's deadline and cancel (`deadline`, a
`time.monotonic()` reading, and `should_stop`) for the downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import GenerationCancelled, InputError, echo
from ...net.safe_http import fetch
from ...schema.lora_refs import LoraRef
from ...settings import Settings
from ..download import sha256_of as file_sha256
from .spec import PEFT_CONFIG, PEFT_WEIGHTS, check_name, confined

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(:[\w./-]{1,200}\.safetensors)?$")


@dataclass(frozen=True)
class LocalAdapter:
    path: Path  # a .safetensors file or a PEFT folder
    sha256: str  # of the weights file: what results echo
    root: Path | None = None  # every file read must resolve inside it (resolved): the adapter folder or the cache

    def config_bytes(self, field: str) -> bytes | None:
        """A PEFT folder's adapter_config.json (confined to `root`), None when there is none."""
        config = self.path / PEFT_CONFIG if self.path.is_dir() else None
        if config is None or not config.is_file():
            return None
        return (confined(field, config, self.root) if self.root else config).read_bytes()

    def key_for(self, field: str) -> str:
        """What identifies the adapter once read or loaded: its weights and, for a PEFT folder, its config
        (which sets the scaling and the kind), so an edited config is not served from the LRUs."""
        config = self.config_bytes(field)
        return self.sha256 if config is None else hashlib.sha256(self.sha256.encode() + config).hexdigest()


def locate(field: str, ref: LoraRef, settings: Settings, *, deadline: float | None = None,
           should_stop: Callable[[], bool] | None = None) -> LocalAdapter:
    """The local file or folder behind `ref`, and the folder its files must stay in. `deadline` (a
    `time.monotonic()` reading) and `should_stop` bound a download by the job's deadline and cancel."""
    if should_stop is not None and should_stop():
        raise GenerationCancelled(f"{field}: stopped before the adapter was fetched")
    if ref.kind in ("name", "path"):
        return _in_lora_dir(field, ref.value, settings)
    if ref.kind == "url":
        local = _download(field, ref.value, settings)
    else:
        local = _from_hub(field, ref.value, settings)
    return dataclasses.replace(local, root=settings.lora_cache_dir.resolve())


# (weights file, size, mtime) -> its SHA-256: a job naming an adapter that is already loaded
# reads no bytes (the hash is how the LRU recognises it); a changed file is hashed again.
_HASHES: dict[tuple[str, int, int], str] = {}
_MAX_HASHES = 1024


def sha256_of(path: Path, root: Path | None = None, field: str = "adapter") -> str:
    """The SHA-256 of the adapter's weights file (resolved inside `root` when given)."""
    target = path / PEFT_WEIGHTS if path.is_dir() and (path / PEFT_WEIGHTS).is_file() else path
    if target.is_dir():
        files = sorted(target.glob("*.safetensors"))
        target = files[0] if files else target
    if root is not None:
        target = confined(field, target, root)
    if not target.is_file():
        return hashlib.sha256().hexdigest()
    stat = target.stat()
    key = (str(target), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        if len(_HASHES) >= _MAX_HASHES:
            _HASHES.clear()
        _HASHES[key] = file_sha256(target)
    return _HASHES[key]


def _in_lora_dir(field: str, value: str, settings: Settings) -> LocalAdapter:
    if settings.lora_dir is None:
        raise InputError(field, f"{field}: this server has no adapter folder (set ACESTEP_LORA_DIR), so adapters "
                                "can only come from a url or a hub repo")
    root = settings.lora_dir.resolve()
    if "\x00" in value or not value.strip():
        raise InputError(field, f"{field} must name an adapter file or folder inside the adapter folder")
    check_name(field, value)
    for candidate in (root / value, root / f"{value}.safetensors"):
        try:
            real = candidate.resolve()
            exists = real.exists()
        except (OSError, RuntimeError):  # a name too long for this file system, a loop of links
            raise InputError(field, f"{field}: {echo(value)} is not a name this server can look up") from None
        if real != root and root not in real.parents:
            raise InputError(field, f"{field}: {echo(value)} lies outside the adapter folder (ACESTEP_LORA_DIR)")
        if exists:
            return LocalAdapter(real, sha256_of(real, root, field), root)
    available = sorted(p.name for p in root.iterdir())[:20] if root.is_dir() else []
    raise InputError(field, f"{field}: no adapter {echo(value)} in the adapter folder (available: "
                            f"{', '.join(available) or 'none'})")


def _download(field: str, url: str, settings: Settings) -> LocalAdapter:
    if not url.lower().startswith("https://") and not (settings.allow_private_urls and url.startswith("http://")):
        raise InputError(field, f"{field}: url must be an https URL; got {url[:80]!r}")
    cache = settings.lora_cache_dir
    index = cache / "urls" / hashlib.sha256(url.encode()).hexdigest()
    if index.is_file():
        cached = cache / index.read_text().strip()
        if cached.is_file():
            return LocalAdapter(cached, cached.stem)
    data = _fetch(field, url, settings)
    sha = hashlib.sha256(data).hexdigest()
    target = cache / f"{sha}.safetensors"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "urls").mkdir(exist_ok=True)
    if not target.is_file():
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(target)
    index.write_text(target.name)
    return LocalAdapter(target, sha)


def _fetch(field: str, url: str, settings: Settings) -> bytes:
    """The adapter's bytes, under the same private-network rules and timeout as audio inputs."""
    max_bytes = settings.max_lora_bytes

    def check_size(size: int) -> None:
        if size > max_bytes:
            raise InputError(field, f"{field}: the adapter at that url is larger than {max_bytes / 2**20:g} MB "
                                    "(ACESTEP_MAX_LORA_MB)")

    return fetch(field, url, allow_private=settings.allow_private_urls, what="the adapter file",
                 time_left=lambda: settings.audio_fetch_timeout_s, check_size=check_size)


def _from_hub(field: str, value: str, settings: Settings) -> LocalAdapter:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if not _REPO_ID.match(value):
        raise InputError(field, f"{field}: repo must be a hub repository id such as owner/name (optionally "
                                f"owner/name:file.safetensors); got {value[:80]!r}")
    repo, _, filename = value.partition(":")
    patterns = [filename] if filename else ["*.safetensors", "*.json"]
    try:
        folder = Path(snapshot_download(repo, allow_patterns=patterns, cache_dir=settings.lora_cache_dir / "hub",
                                        endpoint=settings.hub_endpoint))
    except RepositoryNotFoundError:
        raise InputError(field, f"{field}: the hub has no repository {repo!r}") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise InputError(field, f"{field}: repository {repo!r} could not be fetched ({type(exc).__name__})") from None
    path = folder / filename if filename else folder
    if not path.exists() or (path.is_dir() and not any(path.glob("*.safetensors"))):
        raise InputError(field, f"{field}: repository {repo!r} holds no .safetensors adapter")
    return LocalAdapter(path, sha256_of(path))
