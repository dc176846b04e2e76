"""A local stand-in for the Hugging Face hub: serves folders as model repositories on loopback.

It answers the calls huggingface_hub makes for `model_info`, `list_repo_tree` and file downloads,
with the same headers and JSON shapes, and computes ids the way the hub does (git blob sha1; LFS
SHA-256 for weight files), so the download code runs unmodified against it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".pt", ".bin")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _entry(folder: Path, path: Path) -> dict:
    data = path.read_bytes()
    entry = {"type": "file", "path": path.relative_to(folder).as_posix(), "size": len(data),
             "oid": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()}
    if path.suffix in LFS_SUFFIXES:
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


class HubStandIn:
    def __init__(self, repos: dict[str, Path], corrupt: set[str] = frozenset(), answer_commit: str | None = None):
        self.repos = repos
        # Like the hub, a request for a commit is answered with that commit (the folder is served as
        # it is at every commit), a branch with COMMIT; `answer_commit` forces another answer.
        self.answer_commit = answer_commit
        self.corrupt = corrupt  # repo-relative paths served with one flipped byte
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit_for(self, revision: str) -> str:
        if self.answer_commit:
            return self.answer_commit
        is_commit = len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)
        return revision if is_commit else COMMIT

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, payload, status=200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, head: bool):
                hub.requests.append(f"{self.command} {self.path}")
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                if parts[:2] == ["api", "models"]:
                    repo_id = "/".join(parts[2:4])
                    folder = hub.repos.get(repo_id)
                    if folder is None:
                        return self._json({"error": "Repository not found"}, 404)
                    if len(parts) >= 6 and parts[4] == "tree":
                        return self._json([_entry(folder, p) for p in _files(folder)])
                    siblings = [{"rfilename": p.relative_to(folder).as_posix()} for p in _files(folder)]
                    asked = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
                    return self._json({"id": repo_id, "modelId": repo_id, "sha": hub.commit_for(asked),
                                       "siblings": siblings,
                                       "private": False})
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, rel = "/".join(parts[:2]), "/".join(parts[4:])
                    path = hub.repos.get(repo_id, Path("/nonexistent")) / rel
                    if not path.is_file():
                        return self._json({"error": "Entry not found"}, 404)
                    data = path.read_bytes()
                    entry = _entry(hub.repos[repo_id], path)
                    if rel in hub.corrupt:
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("X-Repo-Commit", hub.commit_for(parts[3]))
                    self.send_header("ETag", f'"{entry["oid"]}"')
                    if "lfs" in entry:
                        self.send_header("X-Linked-Etag", f'"{entry["lfs"]["oid"]}"')
                        self.send_header("X-Linked-Size", str(len(data)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(data)
                    return None
                return self._json({"error": "not found"}, 404)

            def do_GET(self):
                self._route(head=False)

            def do_HEAD(self):
                self._route(head=True)

        return Handler
