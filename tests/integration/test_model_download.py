"""Verifying an installed model folder against its recorded files."""

import shutil

import pytest

from acestep_worker.models import download


def test_verify_reports_missing_and_resized_files(tiny_root, tmp_path):
    from huggingface_hub.hf_api import RepoFile

    folder = tmp_path / "f"
    shutil.copytree(tiny_root / "vae", folder)
    entries = [RepoFile(path="config.json", size=1, oid="0" * 40), RepoFile(path="gone.json", size=3, oid="0" * 40)]
    with pytest.raises(download.IntegrityError, match="config.json: .* bytes, expected 1; gone.json: missing"):
        download.verify(folder, entries)
