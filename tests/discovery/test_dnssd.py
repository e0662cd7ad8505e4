"""The WoT DNS-SD vocabulary: TXT records built and read per WoT Discovery 6.3."""

from __future__ import annotations

import pytest

from discovery._dnssd import Announcement, instance_label, parse_txt, revision_of, sort_addresses, txt_record
from wot_agents import AnnouncementError


def test_txt_record_puts_td_first() -> None:
    txt = txt_record(td_path="/.well-known/wot", kind="Directory", scheme="https", revision="abc")
    assert list(txt) == ["td", "type", "scheme", "rev"]
    assert txt["type"] == "Directory" and txt["scheme"] == "https"


def test_parse_txt_applies_the_spec_defaults() -> None:
    assert parse_txt({"td": "/td"}) == ("/td", "Thing", "http", None)


@pytest.mark.parametrize(
    "td",
    [
        None,
        "",
        "td",  # relative
        "//evil.example/td",  # network-path reference: another host
        "http://evil.example/td",
        "/td?x=1",
        "/td#frag",
        "/t d",
        "/td\r\nHost: evil",
        "/" + "a" * 2000,
    ],
)
def test_parse_txt_refuses_a_td_that_is_not_an_absolute_path(td: str | None) -> None:
    with pytest.raises(AnnouncementError):
        parse_txt({"td": td})


@pytest.mark.parametrize("txt", [{"td": "/td", "type": "Printer"}, {"td": "/td", "scheme": "ftp"}])
def test_parse_txt_refuses_unknown_type_and_scheme(txt: dict[str, str]) -> None:
    with pytest.raises(AnnouncementError):
        parse_txt(txt)


def test_instance_label_is_at_most_56_utf8_bytes_and_has_no_control_characters() -> None:
    label = instance_label("Wetter\x00Agent " + "ü" * 60)
    assert len(label.encode()) <= 56
    assert "\x00" not in label and label.startswith("Wetter Agent")
    assert instance_label("\n\t ") == "WoT Thing"


def test_revision_changes_with_the_document_only() -> None:
    td = {"title": "A", "id": "urn:a"}
    assert revision_of(td) == revision_of(dict(reversed(td.items())))
    assert revision_of(td) != revision_of({**td, "title": "B"})


def test_td_urls_use_the_announced_addresses_ipv4_first() -> None:
    addresses = sort_addresses(["fe80::1%2", "fd00::5", "10.0.0.7", "10.0.0.7"])
    service = Announcement("A._wot._tcp.local.", "Thing", "http", "/td", "a.local.", 8080, addresses)
    assert service.instance == "A"
    assert service.td_urls() == [
        "http://10.0.0.7:8080/td",
        "http://[fd00::5]:8080/td",
        "http://[fe80::1%252]:8080/td",
    ]
