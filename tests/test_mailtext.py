"""Body text helpers: real-text detection, HTML to text, format=flowed, cleaning."""

from __future__ import annotations

import pytest

from bridge.mailtext import clean_body, clean_line, has_real_text, html_to_text, unflow


@pytest.mark.parametrize(
    "text",
    [
        "Please fax this.",
        "> old question\n\nMy answer is yes.",  # bottom-posting: text after the quote
        "Short note before the signature.\n-- \nAlice",
        "On second thought, send both pages.",  # starts like an attribution, is not one
    ],
)
def test_real_text_is_recognised(text: str) -> None:
    assert has_real_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n  ",
        "> quoted only\n>\n> Bob",
        "On Mon, Jun 3, 2024 at 9:12 AM Bob <bob@example.org> wrote:\n> hi",
        "On Mon, Jun 3, 2024 at 9:12 AM Bob Builder <bob@example.org>\nwrote:\n> hi",
        "Am 03.06.2024 um 09:12 schrieb Bob Builder:\n> Hallo",
        "Le lun. 3 juin 2024, Bob a écrit :\n> Salut",
        "-- \nAlice Example\nACME Corp.",
        "--\nAlice Example",
        "Sent from my iPhone",
        "Von meinem iPhone gesendet",
        "-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: form\n\nPlease sign.",
        "________________________________\nFrom: Bob Builder <bob@example.org>\n"
        "Sent: Monday, June 3, 2024 9:12 AM\nTo: Alice\nSubject: form\n\nPlease sign.",
        "Von: Bob Builder\nGesendet: Montag, 3. Juni 2024 09:12\nAn: Alice\n\nBitte unterschreiben",
    ],
)
def test_quoted_history_signatures_and_attributions_are_not_real_text(text: str) -> None:
    assert not has_real_text(text)


def test_html_blockquote_becomes_quoted_lines() -> None:
    html = (
        "<div>Yes, agreed.</div><div class=gmail_quote>On Mon Bob wrote:<br>"
        "<blockquote type=cite><p>Shall we?</p><blockquote>older</blockquote></blockquote></div>"
    )
    text = html_to_text(html)
    assert text.splitlines()[0] == "Yes, agreed."
    assert "> Shall we?" in text.splitlines()
    assert "> > older" in text.splitlines()


def test_html_quote_only_reply_has_no_real_text() -> None:
    html = "<div><br></div><div>On Mon, Bob wrote:<br><blockquote>Sign it?</blockquote></div>"
    assert not has_real_text(html_to_text(html))


def test_html_to_text_drops_scripts_styles_comments_and_decodes_entities() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<script>alert('x')</script><!-- hidden -->"
        "<p>Fish &amp; chips&nbsp;for&#160;two</p><ul><li>one</li><li>two</li></ul>"
        "line<br>break</body></html>"
    )
    lines = html_to_text(html).splitlines()
    assert lines == ["Fish & chips for two", "", "- one", "- two", "", "line", "break"]


def test_html_to_text_keeps_the_body_after_an_unclosed_head() -> None:
    assert html_to_text("<html><head><meta x><body>visible</body>") == "visible"


def test_html_to_text_keeps_preformatted_line_breaks() -> None:
    assert html_to_text("<pre>a\nb</pre>") == "a\nb"


def test_html_to_text_survives_unterminated_markup() -> None:
    assert html_to_text("text <!-- never closed") == "text"
    assert html_to_text("text <b never closed") == "text"


def test_unflow_joins_soft_breaks_within_one_quote_depth() -> None:
    flowed = "This is a long \nline.\n> quoted soft \n> continued\n>> deeper\nplain"
    assert unflow(flowed, delsp=False) == (
        "This is a long line.\n> quoted soft continued\n>> deeper\nplain"
    )


def test_unflow_with_delsp_removes_the_soft_space_and_keeps_the_signature_line() -> None:
    assert unflow("Zusammen\ngeschrie \nben\n-- \nAlice", delsp=True) == (
        "Zusammen\ngeschrieben\n-- \nAlice"
    )


def test_unflow_removes_space_stuffing() -> None:
    assert unflow(" From the start", delsp=False) == "From the start"


def test_clean_line_removes_line_breaks_controls_and_bidi_overrides() -> None:
    assert clean_line("a\r\nX-Injected: yes\u2028b\x00\u202ec") == "a X-Injected: yes bc"


def test_clean_body_normalises_line_ends_and_keeps_tabs() -> None:
    assert clean_body("a\r\nb\rc\td\x07") == "a\nb\nc\td"
