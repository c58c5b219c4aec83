from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cloudstate import sshkeys


@pytest.mark.parametrize("kind,bits", [("ed25519", None), ("rsa", "3072"), ("ecdsa", "384")])
def test_real_keys_parse_and_fingerprint_like_ssh_keygen(tmp_path: Path, kind: str,
                                                         bits: str | None) -> None:
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", bits] if bits else []), "-N", "",
                    "-C", "me@here", "-f", str(path)], check=True)
    line = path.with_suffix(".pub").read_text()
    key = sshkeys.parse(line + "\n")
    expected = subprocess.run(["ssh-keygen", "-l", "-f", str(path.with_suffix(".pub"))],
                              capture_output=True, text=True, check=True).stdout.split()[1]
    assert key.fingerprint == expected
    assert key.line == line.strip()
    assert key.comment == "me@here"


def test_small_rsa_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(path)],
                   check=True)
    with pytest.raises(sshkeys.BadKey, match="1024 bits"):
        sshkeys.parse(path.with_suffix(".pub").read_text())


@pytest.mark.parametrize("text,words", [
    ("", "no key given"),
    ("ssh-ed25519 AAAA", "cut short"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKu4Sb8bV0dSRiGSI7qHnHjYw5uCqbH5zN2q8cYbZ4bhAA== x",
     "extra bytes"),
    ("x" * 20000, "longer than"),
])
def test_malformed_keys(text: str, words: str) -> None:
    with pytest.raises(sshkeys.BadKey, match=words):
        sshkeys.parse(text)
