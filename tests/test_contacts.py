"""Contacts: Google/Outlook CSV and vCard 3.0/4.0 files read as their tools write them, bad rows reported with
file, line and reason, the policy and the templates using the contact, and the recorded busy hour replayed with
an address book: known callers greeted by first name, a vendor and staff never texted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from textbackd import config as config_mod
from textbackd.contacts.book import describe, load
from textbackd.core.errors import ConfigError
from textbackd.core.model import Call, Direction, History, Outcome
from textbackd.daemon.pipeline import Pipeline
from textbackd.decide import policy, templates
from textbackd.store.db import Store

DATA = Path(__file__).parent / "data"
CONTACTS = DATA / "contacts"
BUSY_HOUR = DATA / "asterisk" / "18-busy-office-hour.ami.gz"


def cfg(tmp_path: Path | None = None, sources=None, **sections) -> config_mod.Config:
    data = {"business": {"name": "Apex Dental"},
            "contacts": sources if sources is not None else [
                {"path": str(CONTACTS / "google.csv")}, {"path": str(CONTACTS / "vcard3.vcf")},
                {"path": str(CONTACTS / "vcard4.vcf"), "tags": ["staff"]}],
            **sections}
    if tmp_path is not None:
        data["store"] = {"path": str(tmp_path / "t.db")}
    return config_mod.parse(data, env={})


def test_a_google_csv_export_is_read_with_every_number_and_its_bad_rows_reported() -> None:
    """Google CSV: three numbers in three formats are one contact, two numbers in one cell both count, accents stay,
    an organization is a name, labels are tags; the malformed, over-long and number-less rows are refused by line."""
    book = load(cfg(sources=[{"path": str(CONTACTS / "google.csv")}]))
    maria = book.find("+12125550121")
    assert (maria.name, maria.first_name, maria.numbers) == ("Maria Garcia", "Maria",
                                                             ("+12125550101", "+12125550111", "+12125550121"))
    assert book.find("+12125550101") is maria and maria.tags == ("mycontacts", "starred")
    jose = book.find("+12125550102")
    assert (jose.name, jose.first_name, jose.source) == ("José Núñez", "José", "google.csv:3")
    assert book.find("+12125550114").name == "Zoë Ünal" and book.find("+12125550104").name == "Zoë Ünal"
    acme = book.find("+12125550103")
    assert (acme.name, acme.first_name, acme.tags) == ("Acme Plumbing Supply", "", ("mycontacts", "vendor"))
    assert book.find("+12125550112").name == "Tomás Ibáñez"  # the row after the broken one is read
    assert book.find("+12125550109") is None and book.find("+12125550110") is None
    refused = [str(r) for r in book.report.refused]
    assert refused == [
        "google.csv:8: 'call me' is not a phone number; row skipped",
        "google.csv:9: malformed CSV (unexpected end of data); row skipped",
        "google.csv:10: 42 fields but the header has 40; row skipped",
    ]
    (dup,) = book.report.duplicates
    assert (dup.number, dup.kept.name, dup.dropped.name, dup.dropped.source) == (
        "+12125550101", "Maria Garcia", "Maria G.", "google.csv:7")


def test_vcard_3_and_4_give_every_tel_and_a_broken_card_is_skipped_with_its_line() -> None:
    """vCard 3.0 (TYPE params, grouped item1.TEL, CATEGORIES) and 4.0 (tel: URIs with ;ext=): every TEL of a card;
    a broken property line and a card without END are refused by line; a number in two files is a duplicate."""
    book = load(cfg())
    li = book.find("+12125550115")
    assert (li.name, li.first_name, li.numbers, li.tags) == ("Li Wei", "Wei", ("+12125550105", "+12125550115"),
                                                             ("mycontacts", "family"))
    assert book.find("+12125550106").name == "Renée Côté"
    simon = book.find("+12125550108")
    assert (simon.name, simon.numbers, simon.tags) == ("Simon Perreault", ("+12125550108", "+12125550118"), ("staff",))
    assert book.find("+12125550107") is None and book.find("+12125550119") is None
    refused = [str(r) for r in book.report.refused if not r.where.startswith("google")]
    assert refused[0].startswith("vcard3.vcf:18: malformed vCard (ParseError")
    assert refused[1] == "vcard4.vcf:12: BEGIN:VCARD without END:VCARD at the end of the file; card skipped"
    across = [d for d in book.report.duplicates if d.number == "+12125550102"]
    assert [(d.kept.source, d.dropped.source) for d in across] == [("google.csv:3", "vcard3.vcf:23")]
    text = "\n".join(describe(book.report))
    assert "google.csv: 6 contacts, 9 numbers, 3 refused" in text and "in all: 10 contacts, 15 numbers" in text


def test_a_missing_file_is_reported_and_a_reload_keeps_what_it_had(tmp_path: Path) -> None:
    """A source that cannot be read is one clear error; on a reload the contacts it held before are kept."""
    path = tmp_path / "office.csv"
    path.write_text("Name,Phone\nAna Lima,212-555-0130\n", encoding="utf-8")
    config = cfg(sources=[{"path": str(path)}])
    first = load(config)
    assert first.find("+12125550130").name == "Ana Lima"
    path.unlink()
    again = load(config, previous=first)
    assert again.find("+12125550130").name == "Ana Lima"
    (src,) = again.report.sources
    assert src.error == f"{path}: file not found" and src.kept_previous
    assert load(config).find("+12125550130") is None


def test_config_checks_the_contacts_section() -> None:
    """[[contacts]] errors name the key: no path, a format that cannot be guessed, a column typo, a bad encoding."""
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.path: required"):
        cfg(sources=[{"format": "csv"}])
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.format: say \"csv\" or \"vcard\""):
        cfg(sources=[{"path": "/etc/textbackd/book.txt"}])
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.columns\.nmae: unknown key \(did you mean 'name'\?\)"):
        cfg(sources=[{"path": "a.csv", "columns": {"nmae": "Full"}}])
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.encoding: 'latin-99' is not a text encoding"):
        cfg(sources=[{"path": "a.csv", "encoding": "latin-99"}])
    with pytest.raises(ConfigError, match=r"messages\.missed: unknown placeholder \{frist_name\|there\}"):
        cfg(messages={"missed": "Hi {frist_name|there}"})
    c = cfg(sources=[{"path": "a.csv", "columns": {"name": "Full", "numbers": ["Tel *"]}}])
    assert c.contacts[0].columns.name == ("Full",) and c.contacts[0].columns.numbers == ("Tel *",)


def call(caller: str, name: str = "WIRELESS CALLER", did: str = "5550101") -> Call:
    t = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    return Call(id=f"c-{caller}", pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER, caller=caller,
                caller_raw=caller, caller_name=name, did=did, started=t, ended=t + timedelta(seconds=20),
                ring_seconds=20)


def test_the_policy_greets_a_contact_by_first_name_and_never_texts_a_tag() -> None:
    """{first_name|there} is the contact's first name or "there"; a line's missed_known is used for contacts only;
    a never_text_tags tag is a skip named contact_tag_<tag>."""
    c = cfg(sources=[{"path": str(CONTACTS / "google.csv")}],
            messages={"missed": "Hi {first_name|there}, {business} here. Sorry we missed you."},
            lines=[{"did": "5550101", "missed_known": "{first_name}, it's {business} again: how can we help?"}],
            policy={"never_text_tags": ["vendor"], "quiet_hours": "send"})
    book = load(c)
    now = datetime(2026, 11, 23, 15, 1, tzinfo=timezone.utc)
    known = policy.decide(call("+12125550102"), History(), c, now, book.find("+12125550102"))
    assert (known.text, known.template) == ("José, it's Apex Dental again: how can we help?", "missed_known")
    other_line = policy.decide(call("+12125550102", did="5550100"), History(), c, now, book.find("+12125550102"))
    assert other_line.text == "Hi José, Apex Dental here. Sorry we missed you."
    unknown = policy.decide(call("+12125550177"), History(), c, now, None)
    assert (unknown.text, unknown.template) == ("Hi there, Apex Dental here. Sorry we missed you.", "missed")
    vendor = policy.decide(call("+12125550103"), History(), c, now, book.find("+12125550103"))
    assert (vendor.reason, vendor.detail) == ("contact_tag_vendor", "google.csv:5")
    vals = templates.values(c, None, caller_name="GARCIA,MARIA", did="", at=now)
    assert (vals["caller_name"], vals["first_name"]) == ("Maria", "Maria")  # no contact: a person's CNAM still counts


def test_check_config_renders_each_template_with_and_without_a_known_name(tmp_path: Path) -> None:
    """check-config prints each template rendered for a known caller and, below it, for an unknown one."""
    p = tmp_path / "t.toml"
    p.write_text('[business]\nname = "Apex"\n[messages]\nmissed = "Hi {first_name|there}, Apex here."\n'
                 f'[[contacts]]\npath = "{CONTACTS / "google.csv"}"\n[policy]\nnever_text_tags = ["vendor"]\n')
    out = subprocess.run([sys.executable, "-m", "textbackd", "check-config", "-c", str(p)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "    Hi Maria, Apex here.\n    unknown caller: Hi there, Apex here.\n" in out.stdout
    assert "contacts google.csv: csv" in out.stdout and "never texted: contacts tagged vendor" in out.stdout


def test_the_store_keeps_the_contact_name_and_the_carrier_name_beside_it(tmp_path: Path) -> None:
    """Through the pipeline a known caller's call is stored with the contact's name, the CNAM as carrier_name."""
    c = cfg(tmp_path, sources=[{"path": str(CONTACTS / "google.csv")}], policy={"quiet_hours": "send"})
    store = Store(c.store.path)
    pipe = Pipeline(store, c, load(c).find)
    out = pipe.handle_call(call("+12125550104", name="UNAL Z"), datetime(2026, 11, 23, 15, 1).timestamp())
    row = store.get_call("asterisk:c-+12125550104")
    assert (row.caller_name, row.carrier_name) == ("Zoë Ünal", "UNAL Z")
    assert out.call.to_json()["carrier_name"] == "UNAL Z"
    pipe.handle_call(call("+12125550176", name="WIRELESS CALLER"), datetime(2026, 11, 23, 15, 2).timestamp())
    row = store.get_call("asterisk:c-+12125550176")
    assert (row.caller_name, row.carrier_name) == ("WIRELESS CALLER", "WIRELESS CALLER")
    store.close()


def textbackd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textbackd", *args], capture_output=True, text=True, timeout=120)


def test_the_recorded_busy_hour_with_an_address_book_greets_known_callers_and_skips_vendor_and_staff(tmp_path):
    """`textbackd replay` of the busy hour with an Outlook CSV: the four known callers are greeted by their first
    name (the contact's name wins over the caller ID), the vendor and the staff member are never texted, and
    unknown callers get the fallback."""
    p = tmp_path / "t.toml"
    p.write_text(f"""
[business]
name = "Apex"
[messages]
missed = "Hi {{first_name|there}}, this is {{business}}. Sorry we missed your call."
[[lines]]
did = "5550101"
missed_known = "{{first_name}}, it's {{business}} sales: sorry we missed you!"
[policy]
quiet_hours = "send"
never_text_tags = ["vendor", "staff"]
[[contacts]]
path = "{CONTACTS / 'busy-hour-outlook.csv'}"
""")
    out = textbackd("replay", "-c", str(p), str(BUSY_HOUR))
    assert out.returncode == 0, out.stderr
    calls: dict[str, dict] = {}
    for c in map(json.loads, out.stdout.splitlines()):
        if c["missed"]:
            calls.setdefault(c["caller"], c)  # a caller's first missed call (a second one is a duplicate)
    greet = lambda n: calls[n].get("text")  # noqa: E731
    assert greet("+16145550118") == "Hi Lucía, this is Apex. Sorry we missed your call."
    assert greet("+12025550113") == "Hi Tomás, this is Apex. Sorry we missed your call."
    assert greet("+16145550134") == "Christopher, it's Apex sales: sorry we missed you!"
    chris = calls["+16145550134"]
    assert (chris["caller_name"], chris["carrier_name"], chris["template"]) == (
        "Christopher Martin", "Chris Martin", "missed_known")
    assert (calls["+14045550118"]["action"], calls["+14045550118"]["reason"]) == ("skip", "contact_tag_vendor")
    assert (calls["+13125550169"]["action"], calls["+13125550169"]["reason"]) == ("skip", "contact_tag_staff")
    assert greet("+16145550187") == "Hi Andrew, this is Apex. Sorry we missed your call."  # a person's CNAM
    assert greet("+16145550158") == "Hi there, this is Apex. Sorry we missed your call."
    texted = [c for c in calls.values() if c["action"] == "text"]
    assert len(texted) == 26 and len(calls) == 28 and "replay: 46 calls, 30 missed, 26 texted" in out.stderr


def test_contacts_check_and_find(tmp_path: Path) -> None:
    """`contacts check` prints counts, duplicates and each refused row; `contacts find` names a number in any format."""
    p = tmp_path / "t.toml"
    p.write_text(f'[business]\nname = "Apex"\n[policy]\nnever_text_tags = ["vendor"]\n'
                 f'[[contacts]]\npath = "{CONTACTS / "google.csv"}"\n[[contacts]]\npath = "{CONTACTS / "vcard3.vcf"}"\n')
    check = textbackd("contacts", "check", "-c", str(p))
    assert check.returncode == 0, check.stderr
    assert "google.csv: 6 contacts, 9 numbers, 3 refused" in check.stdout
    assert "  refused google.csv:9: malformed CSV (unexpected end of data); row skipped" in check.stdout
    assert "duplicate +12125550102: José Núñez (google.csv:3) kept, Joe Nunez (vcard3.vcf:23) ignored" in check.stdout
    found = textbackd("contacts", "find", "(212) 555-0103", "-c", str(p))
    assert found.returncode == 0
    assert "+12125550103: Acme Plumbing Supply" in found.stdout and "never texted (contact_tag_vendor)" in found.stdout
    missing = textbackd("contacts", "find", "+12125550199", "-c", str(p))
    assert missing.returncode == 1 and "not in the contacts" in missing.stdout


async def test_the_daemon_reloads_the_contacts_when_the_file_changes_and_on_sighup(tmp_path: Path) -> None:
    """A running daemon picks up a row added to the contacts file by itself, and a SIGHUP reload applies a new
    never_text_tags and a new source."""
    from textbackd.daemon.service import Daemon

    book = tmp_path / "office.csv"
    book.write_text("Name,Phone\nAna Lima,212-555-0130\n", encoding="utf-8")
    conf = tmp_path / "t.toml"
    text = (f'[business]\nname = "Apex"\n[store]\npath = "{tmp_path / "t.db"}"\n[pbx]\nport = 1\n'
            f'[http]\nlisten = "127.0.0.1:0"\n[[contacts]]\npath = "{book}"\n')
    conf.write_text(text)
    d = Daemon(config_mod.load(conf), senders=[], handle_signals=False)
    d.contacts_poll = 0.05
    task = asyncio.create_task(d.run())
    try:
        while d.contacts is None:
            await asyncio.sleep(0.02)
        assert d.pipeline.contacts("+12125550130").name == "Ana Lima"
        book.write_text("Name,Phone,Labels\nAna Lima,212-555-0130,\nBob Stone,212-555-0131,Vendor\n", encoding="utf-8")
        for _ in range(500):
            if d.pipeline.contacts("+12125550131") is not None:
                break
            await asyncio.sleep(0.02)
        assert d.pipeline.contacts("+12125550131").name == "Bob Stone"
        second = tmp_path / "staff.vcf"
        second.write_text("BEGIN:VCARD\nVERSION:3.0\nFN:Cy Park\nTEL:212-555-0132\nEND:VCARD\n", encoding="utf-8")
        conf.write_text(text.replace("[[contacts]]", '[policy]\nnever_text_tags = ["vendor"]\n[[contacts]]')
                        + f'[[contacts]]\npath = "{second}"\ntags = ["staff"]\n')
        d.reload()
        assert d.pipeline.contacts("+12125550132").tags == ("staff",)
        assert policy.contact_tag(d.pipeline.contacts("+12125550131"), d.pipeline.config) == "contact_tag_vendor"
    finally:
        d.stop()
        await asyncio.wait_for(task, 20)
