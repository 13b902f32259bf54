"""Rendering: headers, tokens, injection attempts, template errors, skeleton == stdlib reference."""

from __future__ import annotations

import datetime as dt
import email
import email.quoprimime
import re
from email import policy

import jinja2.sandbox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter_kit import messages as m
from newsletter_kit import tokens
from newsletter_kit.errors import TemplateError, ValidationError

KEY = b"k" * 32
DATE = dt.datetime(2026, 3, 21, 9, 30, tzinfo=dt.timezone.utc)
HTML = ('<html><body><h1>Ciao {{ first_name }}!</h1>\n<p>Le novità di primavera per {{ city }}: '
        'sconti fino al 30% su tutta la collezione, solo per te.</p>\n'
        '<p><a href="https://shop.example/spring?utm_source=news&amp;utm_campaign=spring">Scopri</a></p>\n'
        '<p style="font-size:11px"><a href="{{ unsubscribe_url }}">Disiscriviti</a></p></body></html>\n')


def renderer(**kw):
    args = dict(campaign="spring", subject="Hi {{ first_name }}", html=HTML, from_addr="News <news@example.org>",
                bounce_address="bounces@example.org", signing_key=KEY,
                unsubscribe_url="https://news.example.org/u/{token}", message_id_domain="example.org")
    args.update(kw)
    return m.CampaignRenderer(**args)


def parse(raw: bytes) -> email.message.EmailMessage:
    # As a mail store keeps it: LF line ends (so decoded bodies compare with plain strings).
    return email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)


def same(r, address, fields, mid=None, date=DATE):
    """Render both ways; assert byte equality and return the parsed message."""
    mid = mid or r.new_message_id()
    raw = r.render(address, fields, message_id=mid, date=date)
    ref = r.reference(address, fields, message_id=mid, date=date).as_bytes()
    assert raw == ref
    return parse(raw)


# --- headers ------------------------------------------------------------------------------


def test_headers_stamp_every_message():
    r = renderer()
    mid = r.new_message_id()
    msg = same(r, "ann@example.org", {"first_name": "Ann", "city": "Rome"}, mid)
    assert [k for k in msg.keys()] == [
        "From", "To", "Subject", "Date", "Message-ID", "X-Newsletter-Campaign", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]
    assert (msg["From"], msg["To"], msg["Subject"]) == ("News <news@example.org>", "ann@example.org", "Hi Ann")
    assert msg["Date"].datetime == DATE and msg["Message-ID"] == mid
    assert msg["X-Newsletter-Campaign"] == "spring"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, https = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    token = r.token("ann@example.org")
    assert mailto == f"mailto:bounces@example.org?subject=unsubscribe%20{token}"
    assert https == f"https://news.example.org/u/{token}"
    assert tokens.verify_unsubscribe_token(KEY, token, ["spring"]) == ("spring", "ann@example.org")


def test_without_an_https_url_only_the_mailto_and_no_one_click():
    r = renderer(unsubscribe_url=None)
    msg = same(r, "ann@example.org", {})
    assert "List-Unsubscribe-Post" not in msg
    assert re.fullmatch(r"<mailto:bounces@example\.org\?subject=unsubscribe%20[\w.-]+>", msg["List-Unsubscribe"])


def test_body_is_text_then_html_with_the_unsubscribe_link():
    r = renderer()
    msg = same(r, "ann@example.org", {"first_name": "Zoë", "city": "Milano"})
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert "Ciao Zoë!" in text.get_content() and "<h1>Ciao Zoë!</h1>" in html.get_content()
    link = f"https://news.example.org/u/{r.token('ann@example.org')}"
    assert link in text.get_content() and link in html.get_content()
    assert "novità di primavera per Milano" in text.get_content()


def test_a_given_text_template_is_used():
    msg = same(renderer(text="Hello {{ first_name }}\nBye"), "ann@example.org", {"first_name": "Ann"})
    assert msg.get_body(("plain",)).get_content() == "Hello Ann\nBye\n"


def test_non_ascii_subject_and_display_name_are_encoded_and_decode_back():
    r = renderer(subject="Novità per te, {{ first_name }} — solo oggi 🌸", from_addr="Città Ñews <news@example.org>")
    raw = r.render("ann@example.org", {"first_name": "Zoë"}, message_id=r.new_message_id(), date=DATE)
    assert raw.isascii()
    msg = same(r, "ann@example.org", {"first_name": "Zoë"})
    assert msg["Subject"] == "Novità per te, Zoë — solo oggi 🌸"
    assert msg["From"].addresses[0].display_name == "Città Ñews"


def test_every_line_fits_the_limits():
    r = renderer(html="<p>" + "é" * 500 + " {{ first_name }} </p>\n" + "x" * 300 + " \n")
    raw = r.render("ann@example.org", {"first_name": "A" * 200}, message_id=r.new_message_id())
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_message_ids_are_unique_and_in_the_domain():
    r = renderer()
    ids = {r.new_message_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(re.fullmatch(r"<nk\.[0-9a-f]{32}@example\.org>", i) for i in ids)


def test_the_boundary_follows_the_message_id():
    r = renderer()
    a = r.render("ann@example.org", {}, message_id="<a@example.org>", date=DATE)
    b = r.render("ann@example.org", {}, message_id="<b@example.org>", date=DATE)
    assert a == r.render("ann@example.org", {}, message_id="<a@example.org>", date=DATE)
    assert parse(a).get_boundary() != parse(b).get_boundary()


def test_a_7bit_body_never_holds_its_boundary():
    mid = "<x@example.org>"
    first = m._boundary(mid, [("7bit", b"")])
    r = renderer(html="<p>" + first + "</p>\n", subject="Hi")
    msg = same(r, "ann@example.org", {}, mid)
    assert msg.get_boundary() != first and first in msg.get_body(("html",)).get_content()


# --- injection ----------------------------------------------------------------------------

EXPECTED_HEADERS = {"from", "to", "subject", "date", "message-id", "x-newsletter-campaign",
                    "list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type"}


@pytest.mark.parametrize("name", [
    "Ann\r\nBcc: all@example.org", "Ann\nBcc: all@example.org", "Ann\rBcc: x@example.org",
    "Ann\r\n\r\n<html>evil", "Ann\u2028Bcc: x@example.org", "\"Ann\" <x@example.org>", "Ann\0Bcc",
])
def test_field_values_never_add_headers(name):
    r = renderer(subject="Hi {{ first_name }}")
    msg = same(r, "ann@example.org", {"first_name": name, "city": name})
    assert {k.lower() for k in msg.keys()} == EXPECTED_HEADERS
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["To"] == "ann@example.org"


@pytest.mark.parametrize("address", [
    "ann@example.org\r\nBcc: x@example.org", "ann@example.org\n", "Ann <ann@example.org>",
    '"ann"@example.org', "ann@example.org, bob@example.org", "", "ann", "ann@@example.org", None,
])
def test_bad_recipient_addresses_are_refused(address):
    r = renderer()
    with pytest.raises(ValidationError):
        r.render(address, {}, message_id=r.new_message_id())
    with pytest.raises(ValidationError):
        r.reference(address, {}, message_id=r.new_message_id())


@pytest.mark.parametrize("mid", ["abc@example.org", "<a@example.org>\r\nBcc: x", "<a b@example.org>", "", None])
def test_bad_message_ids_are_refused(mid):
    with pytest.raises(ValidationError):
        renderer().render("ann@example.org", {}, message_id=mid)


@pytest.mark.parametrize("kw", [
    {"from_addr": "News <news@example.org>\r\nBcc: x@example.org"},
    {"from_addr": "a@example.org, b@example.org"}, {"from_addr": "not an address"},
    {"bounce_address": "b@example.org\r\n"}, {"bounce_address": "Bounces <b@example.org>"},
    {"campaign": "spring\r\nBcc: x@example.org"}, {"campaign": " "},
    {"unsubscribe_url": "http://news.example.org/u/{token}"},
    {"unsubscribe_url": "https://news.example.org/u/"},
    {"unsubscribe_url": "https://news.example.org/u/{token}>\r\nBcc: x"},
    {"message_id_domain": "example.org>"},
])
def test_bad_campaign_settings_are_refused_at_construction(kw):
    with pytest.raises(ValidationError):
        renderer(**kw)


# --- templates ----------------------------------------------------------------------------


@pytest.mark.parametrize("kw, what", [
    ({"subject": "Hi {{ first_name"}, "subject"), ({"html": "<p>{% if x %}</p>"}, "HTML"),
    ({"text": "{{ }}"}, "text"), ({"subject": "   "}, "subject is empty"),
])
def test_syntax_errors_fail_at_construction_naming_the_template(kw, what):
    with pytest.raises(TemplateError, match=what):
        renderer(**kw)


def test_runtime_errors_name_the_template_and_recipient():
    r = renderer(html="<p>{{ 1 / count }}</p>")
    with pytest.raises(TemplateError, match=r"HTML template fails for ann@example.org: ZeroDivisionError"):
        r.render("ann@example.org", {"count": 0}, message_id=r.new_message_id())


def test_the_sandbox_refuses_unsafe_attribute_access():
    r = renderer(html="<p>{{ first_name.__class__.__mro__ }}</p>")
    with pytest.raises(TemplateError, match="HTML template"):
        r.render_preview("ann@example.org", {"first_name": "Ann"})


def test_a_missing_field_renders_empty_and_default_works():
    r = renderer(subject="Hi {{ first_name | default('friend') }}", html="<p>[{{ city }}]</p>")
    preview = r.render_preview("ann@example.org", {})
    assert preview["subject"] == "Hi friend" and preview["html"] == "<p>[]</p>"


def test_check_fields_names_a_field_no_contact_has():
    r = renderer(subject="Hi {{ frist_name }}")
    with pytest.raises(TemplateError, match=r"subject template uses \{\{ frist_name \}\}.*first_name"):
        r.check_fields(["first_name", "city"])
    renderer().check_fields(["first_name", "city"])  # email and unsubscribe_url are built in
    assert renderer().fields_used == {"first_name", "city", "unsubscribe_url"}


def test_html_is_autoescaped_subject_and_text_are_not():
    r = renderer(subject="{{ first_name }}", text="{{ first_name }}")
    preview = r.render_preview("ann@example.org", {"first_name": "<b>A&B</b>"})
    assert preview["subject"] == "<b>A&B</b>" and preview["text"] == "<b>A&B</b>"
    assert "&lt;b&gt;A&amp;B&lt;/b&gt;" in preview["html"]
    msg = same(r, "ann@example.org", {"first_name": "<b>A&B</b>"})
    assert msg["Subject"] == "<b>A&B</b>"


def test_the_text_template_is_made_once_from_the_html():
    text = m.text_template_from_html('<p>Hi <b>{{ name }}</b>,</p>{% if vip %}<p>VIP</p>{% endif %}'
                                     '<a href="{{ unsubscribe_url }}">stop</a>')
    assert "{{ name }}" in text and "{% if vip %}" in text and "({{ unsubscribe_url }})" in text


def test_a_value_html2text_drops_is_dropped_from_the_text_template():
    r = renderer(html='<head><title>{{ first_name }}</title></head><p class="{{ cls }}">Hi {{ first_name }}</p>')
    assert not r.warnings and r.text_template is not None
    msg = same(r, "ann@example.org", {"first_name": "Ann", "cls": "x"})
    assert msg.get_body(("plain",)).get_content().split("\n\n")[0] == "Hi Ann"  # then the unsubscribe line


def test_a_statement_html2text_drops_falls_back_to_converting_each_message():
    r = renderer(html='<style>{% if dark %}p {color: white}{% endif %}</style><p>Hi {{ first_name }}</p>')
    assert r.warnings and r.text_template is None
    msg = same(r, "ann@example.org", {"first_name": "Ann", "dark": True})
    assert msg.get_body(("plain",)).get_content().split("\n\n")[0] == "Hi Ann"  # then the unsubscribe line


# --- the skeleton equals the reference ----------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
simple = st.text(alphabet="abcdefghij ABC.-=_ ", max_size=80)
addresses = st.from_regex(r"[a-z0-9][a-z0-9._+'-]{0,20}@[a-z0-9]{1,10}\.(org|net|example)", fullmatch=True).filter(
    lambda a: ".." not in a and not a.split("@")[0].endswith("."))
values = st.one_of(names, simple, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(address=addresses, first=values, city=values, extra=st.sampled_from(["", " ", "  \t", "\r\n", "."]))
def test_render_equals_reference_for_many_recipients(address, first, city, extra):
    r = RENDERERS[len(address) % len(RENDERERS)]
    same(r, address, {"first_name": first, "city": city, "extra": extra})


RENDERERS = [
    renderer(),
    renderer(subject="Novità per {{ first_name }} a {{ city }}", unsubscribe_url=None),
    renderer(html="<p>Hi {{ first_name }}{{ extra }}</p>\n{{ city }}\n", text="{{ first_name }}{{ extra }}\n.\nFrom x"),
    renderer(html="{% for i in range(3) %}<p>{{ first_name|upper }} {{ i }}</p>{% endfor %}\n"
                  "{% if city %}<i>{{ city }}</i>{% endif %}" + "x" * 90 + "{{ extra }}"),
    renderer(subject="Plain ASCII subject for {{ first_name }}", html="<p>short ascii {{ city }}</p>\n",
             text="short ascii {{ city }}\n"),
]


@settings(max_examples=200, deadline=None)
@given(source=st.lists(st.one_of(simple, names, st.sampled_from(["{{ a }}", "{{b}}", "{{ range }}", "\r\n", "\n"])),
                       max_size=8).map("".join),
       a=values, b=values)
def test_the_merge_tag_fast_path_renders_like_jinja(source, a, b):
    for autoescape in (True, False):
        env = jinja2.sandbox.SandboxedEnvironment(autoescape=autoescape, keep_trailing_newline=True)
        try:
            expected = env.from_string(source).render(a=a, b=b)
        except jinja2.TemplateSyntaxError:
            continue
        template = m._Template(env, source, "test")
        assert template.plan is not None
        assert template.render({"a": a, "b": b}, "x@example.org") == expected


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
       st.sampled_from(["", " ", "\t", "=", "x" * 75, "é" * 30]))
def test_body_encoding_matches_the_stdlib(text, tail):
    text = text + tail
    cte, body = m._encode_body(text, {})
    assert cte == m.choose_cte(text)
    lines = text.encode("utf-8").splitlines()
    normal = b"\n".join(lines) + b"\n"
    if cte == "7bit":
        expected = normal.decode("ascii")
    else:
        expected = email.quoprimime.body_encode(normal.decode("latin-1"), 76)
    assert body == expected.replace("\n", "\r\n").encode("ascii")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120))
def test_subject_lines_match_the_stdlib_fold(subject):
    r = RENDERERS[0]
    subject = m.clean_subject(subject)
    assert r._subject_line(subject) == m._fold("Subject", subject)


WORDS = ["Ciao", "Zoë", "novità", "é", "news", "🌸", "a", "日本語", "—", "x" * 10, "=", "?", "_", "Ω", "Ñ,", "'"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from([" ", "  "])), min_size=1, max_size=10))
def test_one_line_subjects_replay_the_stdlib_exactly(pairs):
    subject = "".join(w + sep for w, sep in pairs).rstrip()
    fast = m._one_line_subject(subject)
    assert fast is None or fast == m._fold("Subject", subject)
    if len(subject.encode()) <= 20:
        assert fast is not None  # short subjects never need the stdlib


def test_the_docstring_examples_run():
    import doctest

    assert doctest.testmod(m, optionflags=doctest.ELLIPSIS).failed == 0
