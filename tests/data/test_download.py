"""Registry, lookup and verified downloads, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from molshape.cli import main
from molshape.data.registry import DATASETS, DataSpec, Source
from molshape.data.download import ChecksumError, DownloadError, download, resolve_data_file, sidecar

CONTENT = b"CCO\nc1ccccc1\nCC(=O)O\n"
SHA = hashlib.sha256(CONTENT).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A download cache per test, so one test's cached file is never another's cache hit."""
    monkeypatch.setenv("MOLSHAPE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def server(tmp_path: Path):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (base url, folder, list of request paths)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "tiny.smi").write_bytes(CONTENT)
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", root, handler.requests
    httpd.shutdown()
    httpd.server_close()


def _register(monkeypatch, name: str, *sources: Source, parts: dict | None = None, folder: str | None = None):
    spec = DataSpec(name, "test set", parts or {"main": sources}, folder=folder)
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def test_download_verifies_and_second_call_is_a_cache_hit(server, monkeypatch, tmp_path):
    base, _, requests = server
    _register(monkeypatch, "tiny", Source("tiny.smi", f"{base}/tiny.smi", sha256=SHA))
    path = download("tiny", progress=False)
    assert path.read_bytes() == CONTENT and requests == ["/tiny.smi"]
    assert download("tiny", progress=False) == path and requests == ["/tiny.smi"]  # no second request
    assert resolve_data_file("tiny") == path
    assert not list(path.parent.glob(".*.part"))


def test_checksum_mismatch_removes_the_file(server, monkeypatch, tmp_path):
    base, _, _ = server
    _register(monkeypatch, "tiny", Source("tiny.smi", f"{base}/tiny.smi", sha256="0" * 64))
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match="failed verification and was removed"):
        download("tiny", dest=dest, progress=False)
    assert list(dest.iterdir()) == []


def test_md5_checked_when_no_sha256(server, monkeypatch, tmp_path):
    base, _, _ = server
    _register(monkeypatch, "tiny", Source("tiny.smi", f"{base}/tiny.smi", md5=hashlib.md5(CONTENT).hexdigest()))
    assert download("tiny", dest=tmp_path / "d", progress=False).read_bytes() == CONTENT
    _register(monkeypatch, "tiny2", Source("tiny.smi", f"{base}/tiny.smi", md5="f" * 32))
    with pytest.raises(ChecksumError, match="md5"):
        download("tiny2", dest=tmp_path / "e", progress=False)


def test_offline_fails_with_one_clear_sentence(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _register(monkeypatch, "tiny", Source("tiny.smi", f"http://127.0.0.1:{port}/tiny.smi", sha256=SHA))
    with pytest.raises(DownloadError) as e:
        download("tiny", progress=False)
    message = str(e.value)
    assert "\n" not in message and "--data PATH" in message and "MOLSHAPE_DATA_DIR" in message
    assert f"127.0.0.1:{port}" in message


def test_http_error_falls_back_to_the_next_source(server, monkeypatch, tmp_path):
    base, _, requests = server
    _register(monkeypatch, "tiny", Source("missing.smi", f"{base}/missing.smi", sha256=SHA),
              Source("tiny.smi", f"{base}/tiny.smi", sha256=SHA))
    assert download("tiny", dest=tmp_path, progress=False).name == "tiny.smi"
    assert requests == ["/missing.smi", "/tiny.smi"]


def test_file_url_and_environment_override(server, monkeypatch, tmp_path):
    _, root, requests = server
    _register(monkeypatch, "tiny", Source("tiny.smi", "http://example.invalid/tiny.smi", sha256=SHA))
    path = download("tiny", url=(root / "tiny.smi").as_uri(), dest=tmp_path / "a", progress=False)
    assert path.read_bytes() == CONTENT
    monkeypatch.setenv("MOLSHAPE_DOWNLOAD_URL_TINY", (root / "tiny.smi").as_uri())
    assert download("tiny", dest=tmp_path / "b", progress=False).read_bytes() == CONTENT
    assert requests == []


def test_trust_on_first_use_records_and_checks_sha256(server, monkeypatch, tmp_path):
    base, root, _ = server
    _register(monkeypatch, "tiny", Source("tiny.smi", f"{base}/tiny.smi", rows=3))
    path = download("tiny", progress=False)
    assert sidecar(path).read_text().split()[0] == SHA
    assert resolve_data_file("tiny") == path
    path.write_bytes(CONTENT + b"CCN\n")  # tampered after the first download
    with pytest.raises(ChecksumError, match="recorded"):
        resolve_data_file("tiny")
    # a first download with the wrong number of rows is rejected
    (root / "four.smi").write_bytes(CONTENT + b"CCN\n")
    _register(monkeypatch, "four", Source("four.smi", f"{base}/four.smi", rows=3))
    with pytest.raises(ChecksumError, match="4 rows, expected 3"):
        download("four", progress=False)


def test_multi_part_set_with_base_url(server, monkeypatch, tmp_path):
    base, root, _ = server
    (root / "b.bin").write_bytes(b"second")
    parts = {"a": (Source("tiny.smi", sha256=SHA),),
             "b": (Source("b.bin", sha256=hashlib.sha256(b"second").hexdigest()),)}
    _register(monkeypatch, "pair", parts=parts, folder="pair")
    folder = download("pair", url=base + "/", progress=False)
    assert folder.name == "pair" and sorted(p.name for p in folder.iterdir()) == ["b.bin", "tiny.smi"]
    assert resolve_data_file("pair", part="b") == folder / "b.bin"
    assert resolve_data_file("pair", part="b.bin") == folder / "b.bin"
    with pytest.raises(KeyError, match="no part"):
        resolve_data_file("pair", part="c")


def test_resolve_order_and_messages(data_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("MOLSHAPE_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="molshape data download zinc250k"):
        resolve_data_file("zinc250k")
    monkeypatch.setenv("MOLSHAPE_DATA_DIR", str(data_dir))
    assert resolve_data_file("zinc250k") == data_dir / "zinc250k.smi.gz"  # sha256-verified
    assert resolve_data_file("mnist", part="t10k-labels-idx1-ubyte") == data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    own = tmp_path / "mine.smi"
    own.write_text("CCO\n")
    assert resolve_data_file("zinc250k", data=own) == own  # --data wins
    with pytest.raises(FileNotFoundError, match="--data"):
        resolve_data_file("zinc250k", data=tmp_path / "nope.smi")
    # a registered file name with the wrong content is refused
    fake = tmp_path / "zinc250k.smi.gz"
    fake.write_bytes(b"not zinc")
    with pytest.raises(ChecksumError, match="sha256"):
        resolve_data_file("zinc250k", data=fake)
    with pytest.raises(KeyError, match="known data sets"):
        resolve_data_file("zinc")


def test_expr_is_generated_not_downloaded(monkeypatch):
    monkeypatch.delenv("MOLSHAPE_DATA_DIR", raising=False)
    with pytest.raises(DownloadError, match="generates 100,000"):
        download("expr", progress=False)
    with pytest.raises(FileNotFoundError) as e:
        resolve_data_file("expr")
    assert "molshape data download" not in str(e.value)


def test_registry_entries():
    for name in ("zinc250k", "expr", "mnist", "fashion-mnist", "svhn", "celeba"):
        assert name in DATASETS
    for spec in DATASETS.values():
        for s in spec.sources():
            assert s.sha256 or s.md5 or s.rows, (spec.name, s.file)  # every file has a check
    assert len(DATASETS["mnist"].parts) == 4


def test_cli_download_and_info(server, monkeypatch, tmp_path):
    base, _, requests = server
    _register(monkeypatch, "tiny", Source("tiny.smi", "http://example.invalid/tiny.smi", sha256=SHA))
    runner = CliRunner()
    res = runner.invoke(main, ["data", "download", "tiny", "--url", f"{base}/tiny.smi", "--json"])
    assert res.exit_code == 0, res.output
    assert Path(json.loads(res.stdout)["path"]).read_bytes() == CONTENT
    res = runner.invoke(main, ["data", "info", "tiny", "--json"])
    part = json.loads(res.stdout)["datasets"][0]["parts"][0]
    assert part["found"] and part["verified"] == "sha256" and part["where"] == "cache"
    res = runner.invoke(main, ["data", "download", "tiny"])  # cached: the unreachable default is not asked
    assert res.exit_code == 0
    res = runner.invoke(main, ["data", "download", "tiny", "--dest", str(tmp_path / "new")])
    assert res.exit_code == 1 and "--data PATH" in res.output
    res = runner.invoke(main, ["data", "download", "expr", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["generated"] is True
    res = runner.invoke(main, ["data", "download", "zinc"])
    assert res.exit_code == 2 and "known data sets" in res.output
