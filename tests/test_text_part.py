"""The plain-text part a person reads (issue 10, item 2): made from the HTML, no Markdown left.

The sample template's text part is compared with tests/text_samples/sample_template.txt, as a
real server (aiosmtpd) receives it through `campaign send`.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter_kit import campaigns
from newsletter_kit import messages as m
from newsletter_kit import plaintext
from newsletter_kit import settings as s
from newsletter_kit.audience import add_contacts
from newsletter_kit.store import open_store

SAMPLE = Path(m.__file__).parent / "demo_data" / "sample_template.html"
EXPECTED = Path(__file__).parent / "text_samples" / "sample_template.txt"
KW = dict(campaign="spring", subject="Spring sale", from_addr="Shop News <news@shop.example>",
          bounce_address="bounces@shop.example", signing_key=b"k" * 32,
          unsubscribe_url="https://shop.example/unsubscribe/{token}")
FIELDS = {"first_name": "Ann", "city": "Rome", "signed_up": "March 2024"}
MARKDOWN = re.compile(r"^\s*#|\*\*|__|\]\(|^\s*\|| \| |^-{3,}\s*$|\\[-.+*_#\\]", re.MULTILINE)


def text_part(raw: bytes) -> str:
    msg = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    return msg.get_body(("plain",)).get_content()


def readable(text: str, unsubscribe: str) -> None:
    """What a person reading the text part needs, whatever the HTML was."""
    assert not MARKDOWN.search(text), MARKDOWN.search(text)
    assert unsubscribe in text
    for line in text.splitlines():
        assert len(line) <= plaintext.WIDTH or " " not in line.strip(), line  # only an unbreakable word is longer
        assert line == line.rstrip()
    assert "\n\n\n" not in text


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


def test_the_sample_templates_text_part_is_the_expected_text_on_a_real_server(store, smtp_server):
    srv = smtp_server(tls="none")
    s.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=10,
                           from_addr="Shop News <news@shop.example>",
                           unsubscribe_url="https://shop.example/unsubscribe/{token}")
    add_contacts(store, [{"email": "ann@example.org", **FIELDS}], list_name="news")
    campaigns.create_campaign(store, "spring", "news", "Spring sale", SAMPLE.read_text())
    assert campaigns.send_campaign(store, "spring").sent == 1
    (env,) = srv.messages
    token = re.search(rb"unsubscribe/([\w.-]+)>", env.content).group(1).decode()  # the store's own key
    expected = EXPECTED.read_text().replace(
        "IzYyMmE0OTRkM2VhOGM3YmEKYW5uQGV4YW1wbGUub3Jn.O4Xe0mozSjp01FhlfXDm3g", token)
    assert text_part(env.content) == expected


def test_the_sample_text_part_reads_well():
    r = m.CampaignRenderer(html=SAMPLE.read_text(), **KW)
    assert r.warnings == [] and r.text_template is not None  # made once, not per message
    text = text_part(r.render("ann@example.org", FIELDS, message_id=r.new_message_id()))
    assert text == EXPECTED.read_text()
    readable(text, f"https://shop.example/unsubscribe/{r.token('ann@example.org')}")
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == "Spring sale: 20% off until Sunday" and paragraphs[1] == "Hello Ann,"
    assert "Visit the shop (https://shop.example/spring)" in paragraphs
    assert "code SPRING20." in text and "SPRING20**" not in text
    # A contact without the optional fields: the sentences close up, nothing dangles.
    bare = text_part(r.render("bob@example.org", {}, message_id=r.new_message_id()))
    assert "Hello there," in bare and "spring is here: until Sunday" in bare and "with us." in bare


@pytest.mark.parametrize("html, expected", [
    ('<h2>News</h2><p>Read <a href="https://x.example/a-b-c">the post</a>.</p>',
     "News\n\nRead the post (https://x.example/a-b-c).\n"),
    ('<p><a href="https://x.example/">https://x.example/</a></p>', "https://x.example/\n"),
    ('<p>Write to <a href="mailto:help@x.example">us</a></p>', "Write to us (help@x.example)\n"),
    ('<p><a href="#top">Back to top</a></p>', "Back to top\n"),
    ('<p><a href="https://x.example/"><img src="logo.png" alt="Shop logo"></a></p>',
     "Shop logo (https://x.example/)\n"),
    ("<ul><li>one</li><li>two</li></ul>", "  - one\n  - two\n"),
    ("<p>1. not a list, *not* _emphasis_, C:\\dir</p>", "1. not a list, *not* _emphasis_, C:\\dir\n"),
    ("<table><tr><th>Size</th><th>Price</th></tr><tr><td>S</td><td>10</td></tr></table>", None),
])
def test_html_becomes_plain_text(html, expected):
    text = plaintext.html_to_text(html)
    if expected is not None:
        assert text == expected
    assert "|" not in text and "---" not in text


def test_long_paragraphs_wrap_between_76_and_the_next_word_and_urls_stay_whole():
    url = "https://shop.example/a-very-long-path-with-many-hyphens/and-a-query?utm_source=news-letter"
    text = plaintext.html_to_text("<p>" + "word " * 60 + f'<a href="{url}">here</a> and more words.</p>')
    lines = text.splitlines()
    assert all(len(line) <= 76 for line in lines if url not in line)
    assert sum(url in line for line in lines) == 1 and all(len(line) >= 60 for line in lines[:3])


def test_without_an_unsubscribe_link_in_the_html_the_text_part_still_has_one():
    r = m.CampaignRenderer(html="<p>Hello {{ first_name }}</p>", **KW)
    text = r.render_preview("ann@example.org", {"first_name": "Ann"})["text"]
    url = f"https://shop.example/unsubscribe/{r.token('ann@example.org')}"
    assert text.startswith("Hello Ann\n\n") and re.search(r"\nUnsubscribe:\s" + re.escape(url) + r"\n\Z", text)


def test_a_given_text_template_is_sent_as_written():
    r = m.CampaignRenderer(html="<p>x</p>", text="Hi {{ first_name }}\n" + "x " * 60 + "\n", **KW)
    assert r.render_preview("ann@example.org", {"first_name": "Ann"})["text"] == "Hi Ann\n" + "x " * 60 + "\n"


BLOCKS = st.sampled_from([
    "<p>Hello {{ first_name }},</p>", "<h1>Title</h1>", "<p><b>Bold</b> and <i>italic</i> words.</p>",
    '<p><a href="https://shop.example/x-y">Shop</a></p>', "<table><tr><td><p>cell one</p></td><td>two</td></tr></table>",
    "<ul><li>a</li><li>b</li></ul>", "<br>", "<hr>", "<p>" + "long words " * 15 + "</p>",
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>', "<blockquote>quoted</blockquote>",
    '<img src="x.png" alt="Banner">', "<p>{% if city %}In {{ city }}{% endif %}</p>",
])


@settings(max_examples=150, deadline=None)
@given(st.lists(BLOCKS, min_size=1, max_size=8).map("".join), st.sampled_from(["Ann", "", "Zoë " * 30]))
def test_any_newsletter_gives_a_readable_text_part(html, name):
    r = m.CampaignRenderer(html=html, **KW)
    text = r.render_preview("ann@example.org", {"first_name": name, "city": name})["text"]
    readable(text, f"https://shop.example/unsubscribe/{r.token('ann@example.org')}")
