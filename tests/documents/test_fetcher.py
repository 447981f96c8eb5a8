"""The safe URL fetcher: WeasyPrint reads only files inside the templates folder, and
nothing ever connects anywhere."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_batch._core.errors import RenderError
from billing_batch.config.settings import TEMPLATES_DIR
from billing_batch.documents import fetcher as fetching
from billing_batch.documents import pdf
from tests.documents.samples import OWN_CSS


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP server nobody should connect to."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    try:
        yield srv
    finally:
        srv.close()


@pytest.mark.parametrize(
    "tag",
    [
        '<link rel="stylesheet" href="http://127.0.0.1:{port}/evil.css">',
        '<img src="http://127.0.0.1:{port}/pixel.png">',
        '<img src="file:///etc/passwd">',
        '<link rel="stylesheet" href="../../../../etc/passwd">',
        '<img src="data:image/png;base64,iVBORw0KGgo=">',
    ],
)
def test_foreign_urls_are_refused(tag: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    fetcher = fetching.safe_url_fetcher(TEMPLATES_DIR)
    html = f"<html><head>{tag.format(port=port)}</head><body><p>x</p></body></html>"
    with pytest.raises(RenderError, match="refused"):
        pdf.html_to_pdf(html, identifier=b"test", url_fetcher=fetcher)
    assert len(fetcher.refused) == 1 and fetcher.refused == fetcher.requested[len(OWN_CSS) :]
    with pytest.raises(BlockingIOError):  # nothing ever connected
        listener.accept()


def test_fetcher_serves_only_files_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "sub").mkdir(parents=True)
    (root / "a.css").write_text("p { color: red }")
    (root / "sub" / "b.css").write_text("p { color: blue }")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "link.css").symlink_to(secret)
    fetcher = fetching.safe_url_fetcher(root)
    ok = fetcher.fetch((root / "a.css").as_uri())
    assert ok.read() == b"p { color: red }" and ok.content_type == "text/css"
    assert fetcher.fetch((root / "sub" / "b.css").as_uri()).read() == b"p { color: blue }"
    refused = [
        secret.as_uri(),
        root.as_uri() + "/../secret.txt",
        root.as_uri() + "/sub/%2E%2E/%2E%2E/secret.txt",
        (root / "link.css").as_uri(),  # a symlink out of the root
        (root / "missing.css").as_uri(),
        (root / "sub").as_uri(),  # a folder
        "file://otherhost" + (root / "a.css").as_posix(),
        "http://127.0.0.1:9/a.css",
        "https://example.com/a.css",
        "ftp://example.com/a.css",
        "data:text/css,p{}",
    ]
    for url in refused:
        with pytest.raises(fetching.FetchRefusedError):
            fetcher.fetch(url)
    assert fetcher.refused == refused
