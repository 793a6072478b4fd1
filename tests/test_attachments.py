"""Attachments are read only from inside EMAIL_ATTACHMENTS_DIR, within the size limit."""

from __future__ import annotations

import os

import pytest

import tools
from tests.builders import send


@pytest.fixture
def attachments_dir(tmp_path, runtime):
    folder = tmp_path / "attachments"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_text("fine")
    (folder / "sub" / "nested.txt").write_text("nested")
    (folder / "big.bin").write_bytes(b"x" * 2048)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (folder / "escape.txt").symlink_to(secret)
    (folder / "dirlink").symlink_to(tmp_path)
    os.mkfifo(folder / "pipe")
    tools.configure(runtime.settings.replace(attachments_dir=folder, max_attachment_bytes=1024))
    return folder


def test_files_inside_the_folder_are_attached(attachments_dir, workspace, smtp_sink):
    result = send(workspace, attachments=["ok.txt", "sub/nested.txt"])
    assert result["status"] == "sent", result
    assert b"nested.txt" in smtp_sink.messages[0].data


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "/etc/passwd",
        "escape.txt",
        "dirlink/secret.txt",
        "big.bin",
        "missing.txt",
        "sub",
        "..\\secret.txt",
        "C:/Windows/win.ini",
        "pipe",
    ],
)
def test_anything_else_is_attachment_rejected_and_nothing_is_sent(
    path, attachments_dir, workspace, smtp_sink
):
    result = send(workspace, attachments=["ok.txt", path])
    assert result["status"] == "blocked"
    assert result["error"]["code"] == "attachment_rejected", result
    assert "top secret" not in str(result)
    assert smtp_sink.messages == []


def test_attachments_are_refused_when_no_folder_is_configured(workspace, smtp_sink, runtime):
    assert runtime.settings.attachments_dir is None
    result = send(workspace, attachments=["ok.txt"])
    assert result["error"]["code"] == "attachment_rejected"
    assert "EMAIL_ATTACHMENTS_DIR" in result["error"]["message"]
    assert smtp_sink.messages == []


def test_absolute_path_inside_the_folder_is_still_refused(attachments_dir, workspace, smtp_sink):
    result = send(workspace, attachments=[os.fspath(attachments_dir / "ok.txt")])
    assert result["error"]["code"] == "attachment_rejected"
