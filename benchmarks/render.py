"""Rendering cost per message: the skeleton render() against two stdlib builds of the same message.

- ``reference()``: ``EmailMessage`` with policy.SMTP (76-column lines), the baseline;
- compat32: ``MIMEMultipart('alternative')`` + two ``MIMEText`` parts, the classic recipe;
- ``render()``: bytes from the per-campaign skeleton (what the send loop uses).

The campaign is a typical newsletter: a ~3 KB Italian HTML body with merge tags and an
unsubscribe link, the text part made from it, a subject with a merge tag. Three subject cases:
an ASCII one, a non-ASCII one whose values repeat (first names), a non-ASCII one unique per
recipient (the worst case: the subject is folded by the stdlib each time).

    .venv/bin/python benchmarks/render.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from newsletter_kit.messages import REFERENCE_POLICY, CampaignRenderer  # noqa: E402

HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Novità di primavera</title></head>
<body style="margin:0;padding:0;background:#f4f4f4;font-family:Helvetica,Arial,sans-serif">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="background:#ffffff">
<tr><td style="padding:24px"><h1 style="font-size:24px;color:#333333">Ciao {{ first_name }}!</h1>
<p style="font-size:16px;line-height:24px;color:#555555">La primavera è arrivata anche a {{ city }}: da oggi
trovi la nuova collezione nei nostri negozi e online, con sconti fino al 30% riservati agli iscritti
alla newsletter. Approfitta delle offerte entro domenica: le quantità sono limitate.</p>
<p style="font-size:16px;line-height:24px;color:#555555">Il tuo codice personale è <b>{{ code }}</b>:
inseriscilo al momento del pagamento per ricevere la spedizione gratuita.</p>
<p><a href="https://shop.example/primavera?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=spring"
style="display:inline-block;padding:12px 24px;background:#2a7ae2;color:#ffffff;text-decoration:none;border-radius:4px">Scopri la collezione</a></p>
<ul style="font-size:16px;line-height:24px;color:#555555">
<li>Giacche leggere, a partire da 49 €</li><li>Scarpe da città e da trekking, -20%</li>
<li>Accessori: borse, cappelli e occhiali da sole</li></ul>
<h2 style="font-size:20px;color:#333333">I più amati della settimana</h2>
<p style="font-size:16px;line-height:24px;color:#555555">Le sneaker bianche in pelle, il trench color sabbia
e la borsa a tracolla in tela sono tornati disponibili in tutte le taglie. Li trovi nella sezione
novità del sito e nei negozi di Milano, Roma, Torino e Bologna, aperti anche la domenica.</p>
<p style="font-size:16px;line-height:24px;color:#555555">Hai domande su un ordine? Rispondi a questa email
oppure scrivici dalla pagina assistenza: ti risponderemo entro 24 ore, dal lunedì al sabato.</p>
<p style="font-size:16px;line-height:24px;color:#555555">Ti ricordiamo che il reso è gratuito entro 30 giorni
dall'acquisto, sia in negozio sia con il corriere: basta stampare l'etichetta dalla tua area personale.</p>
<p style="font-size:16px;line-height:24px;color:#555555">A presto,<br>il team di Shop Example</p>
</td></tr>
<tr><td style="padding:16px 24px;font-size:12px;line-height:18px;color:#999999;border-top:1px solid #eeeeee">
Ricevi questa email perché sei iscritto alla newsletter di Shop Example con l'indirizzo {{ email }}.
Shop Example S.r.l., Via Roma 1, 00100 Roma, P.IVA 01234567890.
<a href="{{ unsubscribe_url }}" style="color:#999999">Annulla l'iscrizione</a></td></tr>
</table></td></tr></table></body></html>
"""
FIRST_NAMES = ["Anna", "Marco", "Giulia", "Luca", "Francesca", "Nicolò", "Zoë", "Matteo", "Chiara", "Andrea"]


def renderer(subject: str) -> CampaignRenderer:
    return CampaignRenderer(campaign="spring", subject=subject, html=HTML, from_addr="Shop Example <news@example.org>",
                            bounce_address="bounces@example.org", signing_key=b"k" * 32,
                            unsubscribe_url="https://news.example.org/u/{token}")


def recipient(i: int, unique: bool) -> tuple[str, dict[str, str]]:
    name = FIRST_NAMES[i % len(FIRST_NAMES)] + (f" {i}" if unique else "")
    return f"user{i}@example.org", {"first_name": name, "city": "Milano", "code": f"SPR-{i:06d}"}


def compat32(r: CampaignRenderer, email: str, fields: dict[str, str], message_id: str) -> bytes:
    """The classic MIMEMultipart recipe, for comparison (same rendered texts)."""
    preview = r.render_preview(email, fields)
    msg = MIMEMultipart("alternative")
    msg["From"], msg["To"], msg["Subject"] = r.from_addr, email, preview["subject"]
    msg["Date"], msg["Message-ID"] = format_datetime(r.last_date or __import__("datetime").datetime.now()), message_id
    msg["X-Newsletter-Campaign"] = r.campaign
    msg["List-Unsubscribe"] = r._links(email)[0]
    msg.attach(MIMEText(preview["text"], "plain", "utf-8"))
    msg.attach(MIMEText(preview["html"], "html", "utf-8"))
    return msg.as_bytes()


def per_message(fn: Callable[[int], object], count: int) -> float:
    """Best of 3 runs, in CPU microseconds per message (steadier than the wall clock on a
    shared machine; rendering does no I/O, so the two agree on an idle one)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for i in range(count):
            fn(i)
        best = min(best, (time.process_time() - start) / count)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    n = args.messages
    print(f"HTML template: {len(HTML.encode())} bytes; best of 3 runs of {n} messages (reference: {max(n // 10, 20)})")
    print(f"{'case':44} {'CPU us/msg':>10} {'x render':>9} {'msg/s':>8}")
    cases = [("ASCII subject", "Hello {{ first_name }}, spring news", False),
             ("non-ASCII subject, repeating values", "Novità di primavera per {{ first_name }}", False),
             ("non-ASCII subject, unique per recipient", "Novità di primavera per {{ first_name }}", True)]
    for label, subject, unique in cases:
        r = renderer(subject)
        mid = r.new_message_id()
        fast = per_message(lambda i: r.render(*recipient(i, unique), message_id=mid), n)
        ref = per_message(lambda i: r.reference(*recipient(i, unique), message_id=mid).as_bytes(
            policy=REFERENCE_POLICY), max(n // 10, 20))
        old = per_message(lambda i: compat32(r, *recipient(i, unique), message_id=mid), max(n // 10, 20))
        print(f"{label}:")
        for name, cost in (("  render() (skeleton)", fast), ("  reference() EmailMessage policy.SMTP", ref),
                           ("  compat32 MIMEMultipart", old)):
            print(f"{name:44} {cost:10.0f} {cost / fast:9.1f} {1e6 / cost:8.0f}")


if __name__ == "__main__":
    main()
