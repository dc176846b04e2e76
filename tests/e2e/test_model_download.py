"""Downloads run the real huggingface_hub code against a local hub stand-in, never the internet."""

import json
import shutil

import pytest

from acestep_worker.models import download
from acestep_worker.models.dit.loading import load_dit

from ..support.hub_standin import HubStandIn


@pytest.fixture()
def fake_repos(tiny_root, tmp_path):
    main = tmp_path / "repo-main"
    for name in ("acestep-v15-turbo", "vae", "Qwen3-Embedding-0.6B"):
        shutil.copytree(tiny_root / name, main / name)
    (main / "acestep-v15-turbo" / "modeling_acestep_v15_turbo.py").write_text("raise SystemExit('never run')\n")
    (main / "README.md").write_text("main repo\n")
    base = tmp_path / "repo-base"
    shutil.copytree(tiny_root / "acestep-v15-base", base)
    return {"ACE-Step/Ace-Step1.5": main, "ACE-Step/acestep-v15-base": base}


def test_downloads_main_and_submodel_into_the_official_layout(fake_repos, tmp_path):
    root = tmp_path / "checkpoints"
    with HubStandIn(fake_repos) as hub:
        added = download.download("main", root, endpoint=hub.url)
        added += download.download("base", root, endpoint=hub.url)
    assert sorted(p.name for p in added) == ["Qwen3-Embedding-0.6B", "acestep-v15-base", "acestep-v15-turbo", "vae"]
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in added)  # no staging left behind
    assert not list(root.rglob("*.py"))  # remote code is never fetched
    assert any("/resolve/" in r for r in hub.requests)
    assert load_dit(root / "acestep-v15-base").variant.family == "base"
    # With no --revision, each repository is fetched at its pinned commit, and the folder says so.
    for folder in added:
        record = json.loads((folder / download.REVISION_FILE).read_text())
        key = "base" if folder.name == "acestep-v15-base" else "main"
        assert record["commit"] == record["requested"] == download.PINNED_REVISIONS[key]
    assert any(f"/revision/{download.PINNED_REVISIONS['main']}" in r for r in hub.requests)


def test_corrupted_transfer_is_caught_and_nothing_is_installed(fake_repos, tmp_path):
    root = tmp_path / "checkpoints"
    with HubStandIn(fake_repos, corrupt={"model.safetensors"}) as hub:
        with pytest.raises(download.IntegrityError, match="model.safetensors: SHA-256 differs"):
            download.download("base", root, endpoint=hub.url)
    assert not (root / "acestep-v15-base").exists()


def test_a_pinned_revision_is_what_gets_fetched_and_recorded(fake_repos, tmp_path, monkeypatch):
    from ..support.hub_standin import COMMIT

    monkeypatch.setitem(download.PINNED_REVISIONS, "base", COMMIT)
    root = tmp_path / "checkpoints"
    with HubStandIn(fake_repos) as hub:
        download.download("base", root, endpoint=hub.url)
    assert any(f"/revision/{COMMIT}" in r for r in hub.requests)
    record = json.loads((root / "acestep-v15-base" / download.REVISION_FILE).read_text())
    assert record == {"repo_id": "ACE-Step/acestep-v15-base", "commit": COMMIT, "requested": COMMIT}


def test_a_hub_answering_another_commit_than_the_pin_is_refused(fake_repos, tmp_path, monkeypatch):
    monkeypatch.setitem(download.PINNED_REVISIONS, "base", "f" * 40)
    with HubStandIn(fake_repos, answer_commit="e" * 40) as hub:
        with pytest.raises(download.IntegrityError, match="asked for commit f{40}, the hub answered"):
            download.download("base", tmp_path / "checkpoints", endpoint=hub.url)
    assert not (tmp_path / "checkpoints" / "acestep-v15-base").exists()


def test_resolve_prints_lines_to_paste_into_the_revision_table(fake_repos, capsys):
    from ..support.hub_standin import COMMIT

    with HubStandIn(fake_repos) as hub:
        assert download.main(["--resolve", "--endpoint", hub.url, "main", "base"]) == 0
    assert capsys.readouterr().out.splitlines() == [f'    "main": "{COMMIT}",', f'    "base": "{COMMIT}",']


def test_an_explicit_revision_overrides_the_pin(fake_repos, tmp_path):
    with HubStandIn(fake_repos) as hub:
        (folder,) = download.download("base", tmp_path / "checkpoints", revision="main", endpoint=hub.url)
    record = json.loads((folder / download.REVISION_FILE).read_text())
    assert record["requested"] == "main" and record["commit"] != download.PINNED_REVISIONS["base"]
