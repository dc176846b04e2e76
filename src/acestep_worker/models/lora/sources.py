"""Where an adapter comes from, turned into a local file or folder and its content hash.

* `name` / `path`: a file or folder inside `ACESTEP_LORA_DIR` (a name may omit `.safetensors`);
  nothing outside that folder is reachable, symlinks included: the adapter's `root` is that folder,
  and every file of it that is read (its weights, its config) must resolve inside it (spec.confined).
* `url`: an https URL, downloaded once with a byte cap (ACESTEP_MAX_LORA_MB) through the same
  private-network checks as audio inputs, and kept in ACESTEP_LORA_CACHE_DIR under its SHA-256.
* `repo`: a hub repository id (`owner/name`, optionally `owner/name:file.safetensors`), fetched from
  the hub's API (safetensors and JSON only) into the same cache.

Every download goes through net/download.py, within the earlier of the job's deadline and
ACESTEP_LORA_FETCH_TIMEOUT, and ends within a fraction of a second of a cancel.

The content hash of a folder is the hash of its weights file: two copies of one adapter are one
adapter, whatever their names. `locate` takes the job's deadline and cancel (`deadline`, a
`time.monotonic()` reading, and `should_stop`) for the downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from ...errors import GenerationCancelled, InputError, echo
from ...net.download import DownloadRules, HTTPRefused, download
from ...schema.lora_refs import LoraRef
from ...settings import Settings
from ..download import sha256_of as file_sha256
from .spec import PEFT_CONFIG, PEFT_WEIGHTS, check_name, confined

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(:[\w./-]{1,200}\.safetensors)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_FILE = re.compile(r"^[\w.-]{1,200}(/[\w.-]{1,200}){0,8}$")
HUB_ENDPOINT = "https://huggingface.co"
HUB_INFO_BYTES = 8 * 2**20  # a repository's file list
HUB_MAX_FILES = 64
USER_AGENT = "acestep-worker (LoRA adapter)"


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
    `time.monotonic()` reading) and `should_stop` (a cancelled job) bound a download, with
    ACESTEP_LORA_FETCH_TIMEOUT, through net/download.py; a local adapter ignores them."""
    if should_stop is not None and should_stop():
        raise GenerationCancelled(f"{field}: stopped before the adapter was fetched")
    if ref.kind in ("name", "path"):
        return _in_lora_dir(field, ref.value, settings)
    if ref.kind == "url":
        local = _download(field, ref.value, settings, deadline, should_stop)
    else:
        local = _from_hub(field, ref.value, settings, deadline, should_stop)
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


def _download(field: str, url: str, settings: Settings, deadline: float | None = None,
              should_stop: Callable[[], bool] | None = None) -> LocalAdapter:
    if not url.lower().startswith("https://") and not (settings.allow_private_urls and url.startswith("http://")):
        raise InputError(field, f"{field}: url must be an https URL; got {url[:80]!r}")
    cache = settings.lora_cache_dir
    index = cache / "urls" / hashlib.sha256(url.encode()).hexdigest()
    if index.is_file():
        cached = cache / index.read_text().strip()
        if cached.is_file():
            return LocalAdapter(cached, cached.stem)
    data = _fetch(field, url, settings, _lora_deadline(settings, deadline), should_stop)
    sha = hashlib.sha256(data).hexdigest()
    target = cache / f"{sha}.safetensors"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "urls").mkdir(exist_ok=True)
    if not target.is_file():
        _write(target, data)
    index.write_text(target.name)
    return LocalAdapter(target, sha)


def _lora_deadline(settings: Settings, deadline: float | None) -> float:
    """The earlier of the job's deadline and ACESTEP_LORA_FETCH_TIMEOUT from now."""
    own_limit = time.monotonic() + settings.lora_fetch_timeout_s
    return own_limit if deadline is None else min(deadline, own_limit)


def _fetch(field: str, url: str, settings: Settings, deadline: float, should_stop: Callable[[], bool] | None,
           max_bytes: int | None = None, what: str = "the adapter file") -> bytes:
    """The bytes at `url`, under the same private-network rules as audio inputs, before `deadline`."""
    max_bytes = settings.max_lora_bytes if max_bytes is None else max_bytes

    def check_size(size: int) -> None:
        if size > max_bytes and what != "the adapter file":
            raise InputError(field, f"{field}: {what} is larger than {max_bytes / 2**20:g} MB")
        if size > max_bytes:
            raise InputError(field, f"{field}: the adapter at that url is larger than "
                                    f"{settings.max_lora_bytes / 2**20:g} MB (ACESTEP_MAX_LORA_MB)")

    limit = f"the job's timeout_seconds or ACESTEP_LORA_FETCH_TIMEOUT={settings.lora_fetch_timeout_s:g} s"
    rules = DownloadRules(deadline=deadline, check_size=check_size, allow_private=settings.allow_private_urls,
                          should_stop=should_stop, limit=limit)
    return download(field, url, what, rules, headers={"User-Agent": USER_AGENT})


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(target)


def _from_hub(field: str, value: str, settings: Settings, deadline: float | None = None,
              should_stop: Callable[[], bool] | None = None) -> LocalAdapter:
    """A hub repository's adapter files (`*.safetensors` and `*.json`, or the one file named), fetched
    through net/download.py from the hub's API and `resolve` URLs (as huggingface_hub does) into
    ACESTEP_LORA_CACHE_DIR/hub/<owner>--<name>/<commit>/."""
    if not _REPO_ID.match(value):
        raise InputError(field, f"{field}: repo must be a hub repository id such as owner/name (optionally "
                                f"owner/name:file.safetensors); got {value[:80]!r}")
    repo, _, filename = value.partition(":")
    if filename and (".." in filename.split("/") or not _HUB_FILE.match(filename)):
        raise InputError(field, f"{field}: repo's file must be a path inside the repository; got {filename[:80]!r}")
    until = _lora_deadline(settings, deadline)
    endpoint = (settings.hub_endpoint or HUB_ENDPOINT).rstrip("/")
    try:
        info = json.loads(_fetch(field, f"{endpoint}/api/models/{repo}/revision/main", settings, until, should_stop,
                                 max_bytes=HUB_INFO_BYTES, what="the repository's file list"))
    except HTTPRefused as exc:
        if exc.status in (401, 404):  # the hub answers 401 for a repository that does not exist
            raise InputError(field, f"{field}: the hub has no repository {repo!r}") from None
        raise InputError(field, f"{field}: repository {repo!r} could not be fetched (HTTP {exc.status})") from None
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(field, f"{field}: repository {repo!r} could not be fetched (its file list is not "
                                "JSON)") from None
    commit = info.get("sha") if isinstance(info, dict) else None
    siblings = info.get("siblings") if isinstance(info, dict) else None
    if not isinstance(commit, str) or not _COMMIT.match(commit) or not isinstance(siblings, list):
        raise InputError(field, f"{field}: repository {repo!r} could not be fetched (an unexpected file list)")
    names = [s.get("rfilename") for s in siblings if isinstance(s, dict)]
    names = [n for n in names if isinstance(n, str) and _HUB_FILE.match(n) and ".." not in n.split("/")]
    wanted = [n for n in names if n == filename] if filename else [
        n for n in names if n.endswith((".safetensors", ".json"))][:HUB_MAX_FILES]
    folder = settings.lora_cache_dir / "hub" / repo.replace("/", "--") / commit
    budget = settings.max_lora_bytes
    for name in wanted:
        target = folder / name
        if not target.is_file():
            data = _fetch(field, f"{endpoint}/{repo}/resolve/{commit}/{quote(name)}", settings, until, should_stop,
                          max_bytes=budget)
            _write(target, data)
        budget -= target.stat().st_size
    path = folder / filename if filename else folder
    if not path.exists() or (path.is_dir() and not any(path.glob("*.safetensors"))):
        raise InputError(field, f"{field}: repository {repo!r} holds no .safetensors adapter")
    return LocalAdapter(path, sha256_of(path))
