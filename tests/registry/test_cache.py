"""Downloaded references are kept once per content and reused; damaged or stale entries are not trusted.

Against a real `mlflow server` (SQLite + local artifacts). Downloads are counted by wrapping the client's
``download_artifacts``: a second job (a second cache object on the same dir) must not download again.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from mlflow_nlsr.io.hashing import sha256_dir
from mlflow_nlsr.registry.cache import ReferenceCache
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model


@pytest.fixture
def counting_client(mlflow_server):
    """A RegistryClient whose downloads are recorded (URI per call); `before` runs inside each one."""
    client = RegistryClient(mlflow_server.url)
    real = client.download_artifacts
    client.downloads, client.before = [], None

    def download(uri, dest):
        client.downloads.append(uri)
        if client.before is not None:
            client.before()
        return real(uri, dest)

    client.download_artifacts = download
    return client


def _register(client, directory, name):
    return log_local_model(directory, name=name, registered_model_name=name, client=client)[1].version


def test_a_reference_is_downloaded_once_and_named_by_its_content_hash(
    counting_client, tiny_peft_dir, model_name, tmp_path, monkeypatch
):
    version = _register(counting_client, tiny_peft_dir, model_name)
    monkeypatch.chdir(tmp_path)
    root = Path(".nlsr-work/references")  # the default work dir is relative

    first = ReferenceCache(root, counting_client).resolve(f"models:/{model_name}/{version}")
    second = ReferenceCache(root, counting_client).resolve(f"models:/{model_name}/{version}")  # next job

    assert len(counting_client.downloads) == 1
    assert first == second and first.parent == root.absolute()
    assert first.name == sha256_dir(first) == sha256_dir(tiny_peft_dir)  # the hash the report records
    assert (first / "adapter_config.json").is_file()


def test_an_alias_is_pinned_to_its_version_and_follows_it_when_it_moves(
    counting_client, tiny_peft_dir, tiny_hf_dir, model_name, tmp_path
):
    v1 = _register(counting_client, tiny_peft_dir, model_name)
    v2 = _register(counting_client, tiny_hf_dir, model_name)
    cache = ReferenceCache(tmp_path / "references", counting_client)
    counting_client.set_alias(model_name, "safe", v1)

    by_alias = cache.resolve(f"models:/{model_name}@safe")
    by_version = cache.resolve(f"models:/{model_name}/{v1}")
    counting_client.set_alias(model_name, "safe", v2)
    moved = cache.resolve(f"models:/{model_name}@safe")

    assert by_alias == by_version and len(counting_client.downloads) == 2
    assert moved != by_alias and moved.name == sha256_dir(tiny_hf_dir)


def test_a_version_recreated_under_the_same_number_is_downloaded_again(
    counting_client, tiny_peft_dir, tiny_hf_dir, model_name, tmp_path
):
    cache = ReferenceCache(tmp_path / "references", counting_client)
    assert _register(counting_client, tiny_peft_dir, model_name) == "1"
    old = cache.resolve(f"models:/{model_name}/1")
    counting_client.mlflow.delete_registered_model(model_name)
    assert _register(counting_client, tiny_hf_dir, model_name) == "1"

    new = cache.resolve(f"models:/{model_name}/1")

    assert len(counting_client.downloads) == 2
    assert old != new and new.name == sha256_dir(tiny_hf_dir)


def test_a_truncated_entry_is_detected_on_reuse_and_downloaded_again(
    counting_client, tiny_peft_dir, model_name, tmp_path
):
    uri = f"models:/{model_name}/{_register(counting_client, tiny_peft_dir, model_name)}"
    cache = ReferenceCache(tmp_path / "references", counting_client)
    entry = cache.resolve(uri)
    weights = entry / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    again = cache.resolve(uri)

    assert len(counting_client.downloads) == 2
    assert again == entry and sha256_dir(again) == again.name


def test_a_rewrite_of_the_same_size_is_found_only_by_rehashing(counting_client, tiny_peft_dir, model_name,
                                                                 tmp_path):  # fmt: skip
    uri = f"models:/{model_name}/{_register(counting_client, tiny_peft_dir, model_name)}"
    cache = ReferenceCache(tmp_path / "references", counting_client)
    entry = cache.resolve(uri)
    config = entry / "adapter_config.json"
    config.write_text(config.read_text().replace('"', "'"))  # same size, other bytes

    assert cache.intact(entry.name), "the size check cannot see this"
    assert [e.digest for e in cache.damaged()] == [entry.name]
    cache.remove(entry.name)
    assert cache.resolve(uri) == entry and len(counting_client.downloads) == 2
    assert cache.damaged() == []


def test_two_workers_resolving_the_same_reference_at_once_share_one_intact_entry(
    counting_client, tiny_peft_dir, model_name, tmp_path
):
    uri = f"models:/{model_name}/{_register(counting_client, tiny_peft_dir, model_name)}"
    root = tmp_path / "references"
    both_downloading = threading.Barrier(2, timeout=60)
    counting_client.before = both_downloading.wait
    found, errors = [], []

    def worker():
        try:
            found.append(ReferenceCache(root, counting_client).resolve(uri))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == [] and len(counting_client.downloads) == 2, "both downloaded at the same time"
    assert found[0] == found[1] and sha256_dir(found[0]) == found[0].name
    assert ReferenceCache(root).intact(found[0].name)
    assert list((root / ".partial").iterdir()) == [], "the loser's copy is dropped"
    assert [e.digest for e in ReferenceCache(root).entries()] == [found[0].name]


def test_a_local_directory_is_used_in_place(counting_client, tiny_peft_dir, tmp_path):
    local = tmp_path / "adapter"
    shutil.copytree(tiny_peft_dir, local)

    resolved = ReferenceCache(tmp_path / "references", counting_client).resolve(str(local))

    assert resolved == local and counting_client.downloads == []
    assert ReferenceCache(tmp_path / "references").entries() == []
