"""The one atomic file write: all or nothing, nothing half-written, no temporaries left."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_batch._core.files import atomic_output, atomic_write_files, atomic_write_text


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_output_publishes_what_the_writer_made(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rejects.jsonl"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert not target.exists()  # nothing visible while the writer works
        tmp.write_text("line\n")
    assert target.read_text() == "line\n"
    assert _names(target.parent) == ["rejects.jsonl"]


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "rejects.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old\n"
    assert _names(tmp_path) == ["rejects.jsonl"]


def test_atomic_write_files_writes_all_or_none(tmp_path: Path) -> None:
    good = tmp_path / "inv.json"
    with pytest.raises(TypeError):
        atomic_write_files([(good, b"{}"), (tmp_path / "inv.pdf", "not bytes")])  # type: ignore[list-item]
    assert _names(tmp_path) == []
    atomic_write_text(good, "{}")
    assert good.read_text() == "{}" and _names(tmp_path) == ["inv.json"]
