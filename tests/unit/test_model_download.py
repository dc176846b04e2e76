"""The download pins and the git blob ids it checks."""

from acestep_worker.models import download


def test_git_blob_id_matches_git(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"hello\n")
    assert download.git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_every_component_is_pinned_to_a_commit():
    assert set(download.PINNED_REVISIONS) == set(download.COMPONENTS)
    assert all(rev is not None and download._is_commit(rev) for rev in download.PINNED_REVISIONS.values())
