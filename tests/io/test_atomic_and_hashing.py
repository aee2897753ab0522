"""Output dirs appear only complete (never partial on error); hashes depend on names and bytes only."""

from __future__ import annotations

import pytest

from mlflow_nlsr.errors import OutputExistsError
from mlflow_nlsr.io import atomic_output_dir, sha256_dir, sha256_file


def test_successful_block_renames_the_temp_dir_into_place(tmp_path):
    out = tmp_path / "deep" / "out"
    with atomic_output_dir(out) as tmp:
        assert tmp != out and tmp.parent == out.parent
        (tmp / "a.txt").write_text("x")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "x"
    assert [p.name for p in out.parent.iterdir()] == ["out"]


def test_error_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "partial.bin").write_bytes(b"123")
        raise RuntimeError("failed halfway")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_output_dir(out):
        pass
    assert (out / "keep").read_text() == "old"


def test_overwrite_replaces_the_old_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_overwrite_keeps_the_old_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(ValueError), atomic_output_dir(out, overwrite=True):
        raise ValueError("nope")
    assert (out / "old").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_dir_hash_depends_on_content_and_names_not_on_creation_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, order in ((a, ["x", "sub/y"]), (b, ["sub/y", "x"])):
        for name in order:
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(name)
    assert sha256_dir(a) == sha256_dir(b)
    (b / "x").write_text("changed")
    assert sha256_dir(a) != sha256_dir(b)
    (b / "x").rename(b / "z")
    (b / "z").write_text("x")
    assert sha256_dir(a) != sha256_dir(b)


def test_file_hash_matches_hashlib(tmp_path):
    import hashlib

    f = tmp_path / "f"
    f.write_bytes(b"hello")
    assert sha256_file(f) == hashlib.sha256(b"hello").hexdigest()


def _count_file_reads(monkeypatch):
    from mlflow_nlsr.io import hashing

    reads: list[str] = []
    real = hashing.sha256_file

    def counting(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(hashing, "sha256_file", counting)
    return reads


def test_a_directory_hashed_again_unchanged_is_not_read_twice(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    reads = _count_file_reads(monkeypatch)
    first = sha256_dir(model)
    assert sha256_dir(model) == first
    assert len(reads) == 1
    assert sha256_dir(model, reuse=False) == first  # verification always reads
    assert len(reads) == 2


def test_a_changed_file_is_hashed_again(tmp_path):
    import os

    model = tmp_path / "model"
    model.mkdir()
    weights = model / "weights.bin"
    weights.write_bytes(b"a" * 100)
    before = sha256_dir(model)
    weights.write_bytes(b"b" * 100)  # same size: only the modification time tells
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert sha256_dir(model) != before
    (model / "extra.json").write_text("{}")  # a new file changes the listing
    assert sha256_dir(model) == sha256_dir(model, reuse=False)


def test_a_remembered_digest_is_trusted_only_for_the_listing_it_was_given_for(tmp_path, monkeypatch):
    from mlflow_nlsr.io.hashing import remember_dir_digest

    model = tmp_path / "entry"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w")
    true_digest = sha256_dir(model, reuse=False)
    moved = tmp_path / "renamed"
    model.rename(moved)
    remember_dir_digest(moved, true_digest)
    reads = _count_file_reads(monkeypatch)
    assert sha256_dir(moved) == true_digest and reads == []
    (moved / "weights.bin").write_bytes(b"other content")
    assert sha256_dir(moved) != true_digest
