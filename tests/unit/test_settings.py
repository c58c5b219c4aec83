"""The one settings reader: kinds, defaults, secrets from files, the check at
start, and the README's table against the declarations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloudstate import settings
from cloudstate.settings import DECLARED, REPO_ROOT, check_environment, read
from cloudstate.settingtypes import BOOL, Reader, Setting, SettingsError

BOOL_ACCEPTS = "1, 0, yes, no, true, false, on or off (any case)"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Each test starts from no SFCLOUD_ variables at all (the suite may run under some)."""
    for name in list(os.environ):
        if name.startswith("SFCLOUD_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --- kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    ("1", True), ("yes", True), ("TRUE", True), (" On ", True),
    ("0", False), ("No", False), ("false", False), ("OFF", False),
])
def test_a_boolean_takes_exactly_these_words(monkeypatch: pytest.MonkeyPatch, text: str,
                                             value: bool) -> None:
    monkeypatch.setenv("SFCLOUD_HTTPS", text)
    assert read("SFCLOUD_HTTPS") is value


@pytest.mark.parametrize("text", ["ture", "y", "2", "enabled", "nein"])
def test_any_other_boolean_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                           text: str) -> None:
    monkeypatch.setenv("SFCLOUD_HTTPS", text)
    with pytest.raises(SettingsError) as caught:
        read("SFCLOUD_HTTPS")
    assert str(caught.value) == (f"SFCLOUD_HTTPS={text!r}: not a boolean; "
                                 f"it accepts {BOOL_ACCEPTS}")


def test_unset_or_empty_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read("SFCLOUD_NETWORK_NODE") is True
    assert read("SFCLOUD_HTTPS") is False
    monkeypatch.setenv("SFCLOUD_NETWORK_NODE", "")  # an env file's "NAME=" line
    assert read("SFCLOUD_NETWORK_NODE") is True
    assert read("SFCLOUD_API_TOKEN_LIFETIME") == 900
    assert read("SFCLOUD_RAM_OVERCOMMIT") == 1.0
    assert read("SFCLOUD_ALLOWED_HOSTS") == ["127.0.0.1", "localhost", "[::1]"]
    assert read("SFCLOUD_UPLINK") == ""
    assert read("SFCLOUD_DOMAIN_TEMPLATE") is None
    assert read("SFCLOUD_FETCH_ALLOW") == []
    assert read("SFCLOUD_DNS_SERVERS") == ()
    assert read("SFCLOUD_ETCD_ENDPOINTS") == [("127.0.0.1", 23790)]


@pytest.mark.parametrize("name,text,value", [
    ("SFCLOUD_API_TOKEN_LIFETIME", " 60 ", 60),
    ("SFCLOUD_AUDIT_RETENTION_DAYS", "0", 0),
    ("SFCLOUD_CPU_OVERCOMMIT", "2.5", 2.5),
    ("SFCLOUD_VIRT_TYPE", "KVM", "kvm"),
    ("SFCLOUD_LOG_LEVEL", "debug", "DEBUG"),
    ("SFCLOUD_ALLOWED_HOSTS", " cloud.example, ,localhost,", ["cloud.example", "localhost"]),
    ("SFCLOUD_DOMAIN_TEMPLATE", "/etc/sfcloud/domain.xml", Path("/etc/sfcloud/domain.xml")),
    ("SFCLOUD_DNS_SERVERS", " 192.0.2.53 ,198.51.100.53", ("192.0.2.53", "198.51.100.53")),
    ("SFCLOUD_ETCD_ENDPOINTS", "https://a:2379,[::1]:2380,b", [("a", 2379), ("::1", 2380),
                                                               ("b", 2379)]),
    ("SFCLOUD_NODE_IP", "10.0.0.5", "10.0.0.5"),
    ("SFCLOUD_FLOATING_NETWORK", "192.0.2.0/28", "192.0.2.0/28"),
    ("SFCLOUD_NET_TAG", "lab1", "lab1"),
    ("SFCLOUD_PORTAL_ORIGINS", "https://cloud.example,http://10.0.0.5:13000",
     ["https://cloud.example", "http://10.0.0.5:13000"]),
])
def test_each_kind_reads_its_value(monkeypatch: pytest.MonkeyPatch, name: str, text: str,
                                   value: object) -> None:
    monkeypatch.setenv(name, text)
    assert read(name) == value


@pytest.mark.parametrize("name,text,message", [
    ("SFCLOUD_API_TOKEN_LIFETIME", "15m",
     "SFCLOUD_API_TOKEN_LIFETIME='15m': not a whole number; it accepts a whole number, "
     "at least 1"),
    ("SFCLOUD_API_TOKEN_LIFETIME", "0", "out of range; it accepts a whole number, at least 1"),
    ("SFCLOUD_NETWORK_MTU", "65000", "it accepts a whole number from 576 to 9000"),
    ("SFCLOUD_CPU_OVERCOMMIT", "nan", "it accepts a number greater than 0"),
    ("SFCLOUD_RAM_OVERCOMMIT", "0", "out of range; it accepts a number greater than 0"),
    ("SFCLOUD_VIRT_TYPE", "xen", "SFCLOUD_VIRT_TYPE='xen': not one of the choices; "
     "it accepts one of auto, kvm, qemu (any case)"),
    ("SFCLOUD_DNS_SERVERS", "8.8.8", "SFCLOUD_DNS_SERVERS='8.8.8': '8.8.8' is not an IPv4 address"),
    ("SFCLOUD_FETCH_ALLOW", "10.0.0.1/8", "'10.0.0.1/8' is not a network in CIDR form"),
    ("SFCLOUD_ETCD_ENDPOINTS", "etcd:port", "'etcd:port' has no valid port"),
    ("SFCLOUD_ETCD_ENDPOINTS", "https://a:2379,http://b:2379",
     "http:// endpoints are not used: etcd is reached over TLS only"),
    ("SFCLOUD_FLOATING_NETWORK", "192.0.2.1/28", "SFCLOUD_FLOATING_NETWORK='192.0.2.1/28': "
     "not a valid CIDR"),
    ("SFCLOUD_FLOATING_NETWORK", "192.0.2.0/30", "smaller than a /29"),
    ("SFCLOUD_FLOATING_ROUTER", "router", "not an IPv4 address"),
    ("SFCLOUD_NODE_IP", "node1", "not an IP address"),
    ("SFCLOUD_NODE_NAME", "../etc", "it accepts a host name"),
    ("SFCLOUD_NET_TAG", "Lab-1", "it accepts 2 to 6 lowercase letters or digits"),
    ("SFCLOUD_PORTAL_URL", "127.0.0.1:13000", "not an http(s) URL"),
    ("SFCLOUD_PORTAL_URL", "http://127.0.0.1:13002", "not an https URL (this link is TLS only)"),
    ("SFCLOUD_PORTAL_AGENTS_ADDRESS", "13002", "not host:port"),
    ("SFCLOUD_CERT_RENEW_DAYS", "0", "it accepts a whole number, at least 1"),
    ("SFCLOUD_PORTAL_ADDRESS", "localhost", "not host:port"),
    ("SFCLOUD_PORTAL_ORIGINS", "https://cloud.example/", "'https://cloud.example/' is not an "
     "origin"),
    ("SFCLOUD_VXLAN_PORT", "70000", "it accepts a port, 1 to 65535"),
])
def test_a_bad_value_says_which_variable_and_what_it_accepts(
        monkeypatch: pytest.MonkeyPatch, name: str, text: str, message: str) -> None:
    monkeypatch.setenv(name, text)
    with pytest.raises(SettingsError, match=re.escape(message)):
        read(name)


def test_worked_out_defaults_follow_the_settings_they_come_from(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SFCLOUD_PORTAL_ADDRESS", "10.0.0.5:8000")
    monkeypatch.setenv("SFCLOUD_STATE_DIR", str(tmp_path))
    # Agents send events to the portal's own listener for them, over TLS.
    assert read("SFCLOUD_PORTAL_AGENTS_ADDRESS") == "10.0.0.5:13002"
    assert read("SFCLOUD_PORTAL_URL") == "https://10.0.0.5:13002"
    assert read("SFCLOUD_PORTAL_ORIGINS") == ["http://10.0.0.5:8000", "http://localhost:8000"]
    assert read("SFCLOUD_DATABASE") == tmp_path / "portal" / "db.sqlite3"
    assert read("SFCLOUD_PKI_DIR") == tmp_path / "pki"
    monkeypatch.setenv("SFCLOUD_PORTAL_URL", "https://cloud.example")
    assert read("SFCLOUD_PORTAL_URL") == "https://cloud.example"


def test_only_declared_settings_can_be_read() -> None:
    with pytest.raises(LookupError, match="SFCLOUD_NOPE is not declared"):
        read("SFCLOUD_NOPE")
    with pytest.raises(LookupError):
        settings.setting("SFCLOUD_NOPE")


def test_a_declaration_with_a_default_its_kind_refuses_fails_at_once() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        Setting("SFCLOUD_EXAMPLE", BOOL, "an example", (Reader.PORTAL,), default="ture")
    with pytest.raises(TypeError, match="needs a default"):
        Setting("SFCLOUD_EXAMPLE", BOOL, "an example", (Reader.PORTAL,))
    with pytest.raises(TypeError, match="one line of help"):
        Setting("SFCLOUD_EXAMPLE", BOOL, "two\nlines", (Reader.PORTAL,), default="no")


def test_every_default_reads_in_an_empty_environment() -> None:
    for declared in DECLARED:
        declared.read()  # raises, naming it, if a worked-out default is broken


# --- secrets and their files -------------------------------------------------------------


def test_a_secret_may_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("k" * 40 + "\n")
    monkeypatch.setenv("SFCLOUD_CLUSTER_SECRET_FILE", str(secret))
    assert read("SFCLOUD_CLUSTER_SECRET") == "k" * 40  # without the file's newline
    monkeypatch.setenv("SFCLOUD_REDIS_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"SFCLOUD_REDIS_URL_FILE='.*missing': cannot read "
                                            r"it: No such file or directory"):
        read("SFCLOUD_REDIS_URL")
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("SFCLOUD_REDIS_URL_FILE", str(tmp_path / "empty"))
    with pytest.raises(SettingsError, match="the file is empty"):
        read("SFCLOUD_REDIS_URL")


def test_a_secret_and_its_file_together_are_an_error(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    (tmp_path / "key").write_text("a" * 50)
    monkeypatch.setenv("SFCLOUD_SECRET_KEY", "b" * 50)
    monkeypatch.setenv("SFCLOUD_SECRET_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(SettingsError, match="SFCLOUD_SECRET_KEY and SFCLOUD_SECRET_KEY_FILE are "
                                            "both set; set only one"):
        read("SFCLOUD_SECRET_KEY")


def test_a_bad_secret_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFCLOUD_CLUSTER_SECRET", "hunter2")
    monkeypatch.setenv("SFCLOUD_DATABASE_URL", "mysql://root:hunter3@db/sfcloud")
    with pytest.raises(SettingsError) as caught:
        check_environment()
    assert "hunter" not in str(caught.value)
    assert str(caught.value).splitlines() == [
        "SFCLOUD_CLUSTER_SECRET: too short; it accepts at least 32 characters",
        "SFCLOUD_DATABASE_URL: not a postgres:// or postgresql:// URL; it accepts a URL such "
        "as postgresql://sfcloud:secret@db/sfcloud",
    ]


# --- the check at start -----------------------------------------------------------------


def test_the_check_names_every_bad_setting_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFCLOUD_HTTPS", "ture")
    monkeypatch.setenv("SFCLOUD_AGENT_PORT", "-1")
    with pytest.raises(SystemExit) as caught:
        settings.check_at_start("portal")
    assert str(caught.value) == "\n".join([
        "portal: not starting: settings are wrong (see README.md, Settings)",
        "  SFCLOUD_HTTPS='ture': not a boolean; it accepts " + BOOL_ACCEPTS,
        "  SFCLOUD_AGENT_PORT='-1': out of range; it accepts a whole number from 0 to 65535",
    ])


def test_unknown_variables_are_warned_about_not_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SFCLOUD_HTTP", "yes")
    monkeypatch.setenv("SFCLOUD_HTTPS_FILE", "/dev/null")  # only secrets have files
    settings.check_at_start("nodeagent")
    assert capsys.readouterr().err.splitlines() == [
        "nodeagent: warning: SFCLOUD_HTTP is not a setting sfcloud knows (did you mean "
        "SFCLOUD_HTTPS?); it is ignored",
        "nodeagent: warning: SFCLOUD_HTTPS_FILE is not a setting sfcloud knows (did you mean "
        "SFCLOUD_HTTPS?); it is ignored",
    ]


def _run(argv: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {name: value for name, value in os.environ.items() if not name.startswith("SFCLOUD_")}
    return subprocess.run(argv, env={**base, **environment}, cwd=REPO_ROOT, text=True,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "deploy.allinone"],  # what `make run` runs
    [sys.executable, "-m", "nodeagent"],
    [sys.executable, "manage.py", "check"],  # the portal: Django's settings
], ids=["make-run", "agent", "portal"])
def test_a_bad_boolean_stops_each_program_before_it_does_anything(
        tmp_path: Path, argv: list[str]) -> None:
    state_dir = tmp_path / "state"
    result = _run(argv, {"SFCLOUD_HTTPS": "ture", "SFCLOUD_STATE_DIR": str(state_dir)})
    assert result.returncode == 1
    assert f"  SFCLOUD_HTTPS='ture': not a boolean; it accepts {BOOL_ACCEPTS}" in \
        result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert not state_dir.exists()  # nothing made, nothing started


def test_the_check_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    # `make run` checks with the system's python3 before the venv exists.
    result = _run([sys.executable, "-I", "-S", "-c",
                   "import sys; sys.path.insert(0, '.'); "
                   "from cloudstate.settings import main; sys.exit(main(['--check']))"],
                  {"SFCLOUD_NETWORK_NODE": "maybe"})
    assert result.returncode == 1
    assert "SFCLOUD_NETWORK_NODE='maybe': not a boolean" in result.stderr


# --- the README ---------------------------------------------------------------------------


def test_the_readme_table_is_the_declarations() -> None:
    problems = settings.readme_differences((REPO_ROOT / "README.md").read_text())
    assert not problems, ("\n".join(problems) + "\n(.venv/bin/python -m cloudstate.settings "
                          "--update-readme rewrites the table)")


def test_the_readme_check_sees_a_missing_line_and_a_changed_default() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    https_row = settings.markdown_row(settings.BY_NAME["SFCLOUD_HTTPS"])
    assert https_row in readme
    without = readme.replace(https_row + "\n", "")
    assert settings.readme_differences(without) == [
        "SFCLOUD_HTTPS is declared but has no line in README.md"]
    changed = readme.replace(https_row, https_row.replace("`off`", "`on`"))
    assert settings.readme_differences(changed)[0].startswith("SFCLOUD_HTTPS: README.md says")
    extra = readme.replace(https_row, https_row + "\n| `SFCLOUD_GONE` | none | portal | gone |")
    assert settings.readme_differences(extra) == [
        "SFCLOUD_GONE is in README.md but declared nowhere"]


def test_update_readme_rewrites_only_the_table(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    stale = tmp_path / "README.md"
    https_row = settings.markdown_row(settings.BY_NAME["SFCLOUD_HTTPS"])
    stale.write_text(readme.replace(https_row + "\n", ""))
    assert settings.update_readme(stale) is True
    assert stale.read_text() == readme
    assert settings.update_readme(stale) is False


def _names_in(paths: list[Path]) -> dict[str, Path]:
    found = {}
    for path in paths:
        for name in re.findall(r"SFCLOUD_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")):
            found.setdefault(name, path)
    return found


def test_every_variable_the_code_or_the_docs_name_is_declared() -> None:
    """A variable read anywhere (Python, the units, the image build, the docs) but not
    declared would have no check and no line in the README."""
    roots = ["portal", "nodeagent", "cloudstate", "deploy", "e2e", "tests/support"]
    suffixes = {".py", ".sh", ".service", ".example", ".md"}
    paths = [p for root in roots for p in (REPO_ROOT / root).rglob("*")
             if p.is_file() and (p.suffix in suffixes or p.name == "build.sh")
             and "static" not in p.parts]
    paths += [REPO_ROOT / "README.md", REPO_ROOT / "Makefile"]
    secrets = {s.file_variable for s in DECLARED if s.kind.secret}
    undeclared = {name: str(path.relative_to(REPO_ROOT))
                  for name, path in _names_in(paths).items()
                  if name not in settings.BY_NAME and name not in secrets}
    assert undeclared == {}
