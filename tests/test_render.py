"""TemplateRenderer: package templates, operator overrides, escaping, strictness, sandbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.render import TemplateRenderer

COVER_CONTEXT: dict[str, object] = {
    "sender": "Alice <alice@example.com>",
    "recipient": "+1 212-555-0100",
    "subject": "Quote",
    "date": "2024-06-03 10:15 CEST",
    "body": "Hello",
    "documents": ["quote.pdf"],
}


def test_package_cover_template_renders_every_field() -> None:
    html = TemplateRenderer().render("cover.html.j2", **COVER_CONTEXT)
    for text in ("+1 212-555-0100", "Alice &lt;alice@example.com&gt;", "Quote", "CEST", "Hello"):
        assert text in html
    assert "<li>quote.pdf</li>" in html


def test_cover_template_escapes_markup_in_every_value() -> None:
    hostile = '<script>alert("x")</script>'
    context = dict.fromkeys(COVER_CONTEXT, hostile) | {"documents": [hostile]}
    html = TemplateRenderer().render("cover.html.j2", **context)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_override_directory_is_searched_first(tmp_path: Path) -> None:
    (tmp_path / "cover.html.j2").write_text("custom {{ subject }}")
    renderer = TemplateRenderer(tmp_path)
    assert renderer.render("cover.html.j2", subject="<x>") == "custom &lt;x&gt;"


def test_templates_missing_from_the_override_directory_come_from_the_package(
    tmp_path: Path,
) -> None:
    (tmp_path / "other.txt.j2").write_text("other")
    html = TemplateRenderer(tmp_path).render("cover.html.j2", **COVER_CONTEXT)
    assert html.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("page.html.j2", True),
        ("page.HTM", True),
        ("feed.xml.jinja2", True),
        ("report.txt.j2", False),
        ("subject.j2", False),
    ],
)
def test_autoescape_follows_the_file_type(tmp_path: Path, name: str, escaped: bool) -> None:
    (tmp_path / name).write_text("{{ value }}")
    rendered = TemplateRenderer(tmp_path).render(name, value="<b>")
    assert rendered == ("&lt;b&gt;" if escaped else "<b>")


def test_text_templates_keep_their_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "mail.txt.j2").write_text("{% if x %}\nyes\n{% endif %}\n")
    assert TemplateRenderer(tmp_path).render("mail.txt.j2", x=True) == "yes\n"


def test_undefined_name_is_a_config_error_naming_the_template(tmp_path: Path) -> None:
    (tmp_path / "typo.txt.j2").write_text("{{ subjcet }}")
    with pytest.raises(ConfigError, match=r"template 'typo.txt.j2'.*subjcet"):
        TemplateRenderer(tmp_path).render("typo.txt.j2", subject="x")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ items.append(4) }}",  # the immutable sandbox refuses mutation
    ],
)
def test_sandbox_refuses_unsafe_template_code(tmp_path: Path, source: str) -> None:
    (tmp_path / "evil.txt.j2").write_text(source)
    with pytest.raises(ConfigError, match=re.escape("evil.txt.j2")):
        TemplateRenderer(tmp_path).render("evil.txt.j2", items=[1, 2, 3])


def test_missing_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("no-such.html.j2")):
        TemplateRenderer().render("no-such.html.j2")


def test_template_names_cannot_escape_the_template_directories(tmp_path: Path) -> None:
    inner = tmp_path / "templates"
    inner.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    with pytest.raises(ConfigError):
        TemplateRenderer(inner).render("../secret.txt")


def test_check_reports_a_syntax_error_before_anything_is_rendered(tmp_path: Path) -> None:
    (tmp_path / "broken.html.j2").write_text("{% if %}")
    renderer = TemplateRenderer(tmp_path)
    renderer.check("cover.html.j2")
    with pytest.raises(ConfigError, match=re.escape("broken.html.j2")):
        renderer.check("cover.html.j2", "broken.html.j2")
