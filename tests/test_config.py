import pathlib
import textwrap

import pytest

from textbackd import config
from textbackd.cli import main
from textbackd.core.errors import ConfigError

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLE = ROOT / "etc" / "textbackd.toml"

MINIMAL = """
[business]
name = "Apex Plumbing"
"""


def write(tmp_path, text: str) -> pathlib.Path:
    p = tmp_path / "textbackd.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_example_config_loads_into_typed_objects():
    """The shipped etc/textbackd.toml parses and keeps its values typed."""
    cfg = config.load(EXAMPLE, env={})
    assert cfg.pbx.kind == "asterisk" and cfg.pbx.port == 5038
    assert cfg.business.name == "Apex Plumbing"
    assert cfg.senders[0].kind == "modem" and cfg.senders[0].device == "/dev/ttyUSB0"
    assert cfg.business.hours.days[0][0][0].hour == 8  # Monday opens 08:00
    assert cfg.business.hours.days[6] == ()  # Sunday closed
    assert cfg.allowed_countries == ("US",)


def test_config_objects_are_immutable():
    """Parsed config cannot be changed after start."""
    cfg = config.parse({"business": {"name": "X"}}, env={})
    with pytest.raises(AttributeError):
        cfg.pbx.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "body, key, reason",
    [
        ('[business]\nname = "X"\n[pbx]\nprot = 5038\n', "pbx.prot", "unknown key (did you mean 'port'?)"),
        ('[business]\nname = "X"\n[pbx]\nport = "5038"\n', "pbx.port", "must be an integer, not a string"),
        ('[business]\nname = "X"\n[pbx]\nport = 70000\n', "pbx.port", "must be at most 65535"),
        ("[business]\n", "business.name", "required"),
        ('[business]\nname = "X"\n[[senders]]\nname = "m"\nkind = "modem"\n', "senders[0].device", 'required for kind "modem"'),
        ('[business]\nname = "X"\n[[senders]]\nname = "m"\nkind = "fax"\n', "senders[0].kind", "must be one of"),
        ('[business]\nname = "X"\ntimezone = "Mars/Olympus"\n', "business.timezone", "not a known time zone"),
        ('[business]\nname = "X"\n[business.hours]\nmon = "18:00-08:00"\n', "business.hours.mon", "ends before it starts"),
        ('[business]\nname = "X"\n[messages]\nmissed = "Hi {nmae}"\n', "messages.missed", "unknown placeholder {nmae}"),
        ('[business]\nname = "X"\n[policy]\nquiet_hours = "maybe"\n', "policy.quiet_hours", "must be one of"),
        ('[business]\nname = "X"\n[policy]\ngrace_seconds = true\n', "policy.grace_seconds", "not a boolean"),
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path, body, key, reason):
    """A bad file is refused with the file, the key path and the reason."""
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as ei:
        config.load(p, env={})
    msg = str(ei.value)
    assert msg.startswith(f"{p}: {key}: ")
    assert reason in msg


def test_second_sender_error_is_indexed(tmp_path):
    """Errors in [[senders]] name the index of the faulty sender."""
    p = write(
        tmp_path,
        """
        [business]
        name = "X"
        [[senders]]
        name = "m0"
        kind = "modem"
        device = "/dev/ttyUSB0"
        [[senders]]
        name = "m1"
        kind = "modem"
        """,
    )
    with pytest.raises(ConfigError, match=r"senders\[1\]\.device: required for kind \"modem\""):
        config.load(p, env={})


def test_invalid_toml_is_a_config_error(tmp_path):
    """Broken TOML syntax is reported as a config error, not a traceback."""
    p = write(tmp_path, "[business\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(p, env={})


def test_missing_file(tmp_path):
    """A missing file is one clear error."""
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml", env={})


def test_secret_from_file_and_credentials_directory(tmp_path):
    """Secrets come from *_file paths, and a systemd credential wins over both."""
    (tmp_path / "ami.secret").write_text("from-file\n")
    p = write(tmp_path, MINIMAL + f'[pbx]\nsecret_file = "{tmp_path / "ami.secret"}"\n')
    assert config.load(p, env={}).pbx.secret.reveal() == "from-file"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pbx.secret").write_text("from-credential")
    assert config.load(p, env={"CREDENTIALS_DIRECTORY": str(creds)}).pbx.secret.reveal() == "from-credential"


def test_secret_inline_and_file_together_is_refused(tmp_path):
    """Giving a secret twice is ambiguous and refused."""
    p = write(tmp_path, MINIMAL + '[pbx]\nsecret = "a"\nsecret_file = "/x"\n')
    with pytest.raises(ConfigError, match="pbx.secret: give either secret or secret_file"):
        config.load(p, env={})


def test_secrets_never_print(tmp_path, capsys):
    """Neither repr() of the config nor check-config output shows a secret."""
    p = write(
        tmp_path,
        MINIMAL
        + """
        [pbx]
        secret = "hunter2-ami"
        [[senders]]
        name = "tw"
        kind = "twilio"
        account_sid = "AC123"
        auth_token = "hunter2-twilio"
        from = "+12125550100"
        """,
    )
    cfg = config.load(p, env={})
    assert "hunter2" not in repr(cfg)
    assert main(["check-config", "-c", str(p)]) == 0
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err
    assert "secret set (hidden)" in out.out


def test_freeswitch_uses_password_and_port_8021():
    """kind = "freeswitch" defaults to port 8021 and takes `password`, refusing `secret`."""
    cfg = config.parse({"business": {"name": "X"}, "pbx": {"kind": "freeswitch", "password": "ClueCon"}}, env={})
    assert cfg.pbx.port == 8021 and cfg.pbx.secret.reveal() == "ClueCon"
    with pytest.raises(ConfigError, match="pbx.secret"):
        config.parse({"business": {"name": "X"}, "pbx": {"kind": "freeswitch", "secret": "x"}}, env={})


def test_check_config_exit_codes(tmp_path, capsys):
    """check-config exits 0 on the example and 1 naming the key on a bad file."""
    assert main(["check-config", "-c", str(EXAMPLE)]) == 0
    assert "pbx: asterisk at 127.0.0.1:5038" in capsys.readouterr().out
    bad = write(tmp_path, MINIMAL + "[pbx]\nport = 'x'\n")
    assert main(["check-config", "-c", str(bad)]) == 1
    assert "pbx.port: must be an integer" in capsys.readouterr().err


def test_config_path_from_environment(tmp_path, monkeypatch, capsys):
    """TEXTBACKD_CONFIG is used when -c is not given."""
    p = write(tmp_path, MINIMAL)
    monkeypatch.setenv("TEXTBACKD_CONFIG", str(p))
    assert main(["check-config"]) == 0
    assert str(p) in capsys.readouterr().out


def test_durations():
    """Follow-up and escalation delays read as seconds."""
    assert config.parse_duration("2h") == 7200
    assert config.parse_duration("90s") == 90
    assert config.parse_duration("soon") is None
