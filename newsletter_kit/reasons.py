"""Why a delivery failed, and whom the failure is about: the reason table.

A notice's facts (status, SMTP reply code, diagnostic text) are read by the detectors in
``bounces/`` and by ``transport`` for live replies; what they *mean* is decided here, once.
Each reason is one row: the side it is about, whether it is a permanent failure of the address,
the RFC 3463 codes that usually carry it, the phrases real servers use for it, and the remedy.
Phrases are tried before codes, in the table's order (the most specific first), because codes
mislead: ``550 5.1.1`` is used for "blocked by Spamhaus", ``553 5.1.8`` is about *our* sender.

Sides:

- ``recipient``: the address itself (unknown, moved, full, suspended...). Counts toward the
  bounce policy of that address (hard or soft).
- ``sender``: our server, IP, domain, authentication or message. Never counts against the
  recipient, whatever the code class; shown in the review with its remedy, and may stop a run.
- ``unclear``: the notice does not say (a system error, a network error). Counts as soft.
- ``none``: not a failure (a complaint, an auto-reply, a success notice).

The kind a bounce recipient gets follows from its reason (``bounces/meaning.py``): a hard
recipient reason is ``hard``, the other recipient reasons ``soft``, a sender reason ``policy``
(never ``hard`` or ``soft``: it says nothing about the address), ``filtered`` ``policy``, the other
unclear reasons ``soft``; a delay warning stays ``delayed`` whatever its reason.

================== ========= ============ =====================================================
reason             side      kind         remedy (sender side)
================== ========= ============ =====================================================
user_unknown       recipient hard
host_unknown       recipient hard
has_moved          recipient hard
not_accept         recipient hard (5xx)   null MX; soft on a 4xx
mailbox_full       recipient soft
suspended          recipient soft
expired            recipient soft         retries ran out (a warning stays ``delayed``)
no_ptr             sender    policy       PTR record for the sending IP, resolving back to it
auth_failure       sender    policy       SPF, DKIM, DMARC alignment (``newsletter-kit check``)
blocked            sender    policy       delisting from the blocklist named, and why
bad_reputation     sender    policy       slow down, engaged subscribers, postmaster tools
sender_rejected    sender    policy       a real, resolvable bounce and From domain
relaying_denied    sender    policy       a server that accepts mail from us (SMTP settings)
security_error     sender    policy       turn on SMTP authentication, check the login
tls_required       sender    policy       send with TLS (starttls or ssl)
too_many_connections sender  policy       fewer parallel connections
rate_limited       sender    policy       a lower daily limit or send rate
virus_detected     sender    policy       check attachments and links
spam_detected      sender    policy       content, links, history; easy unsubscribing
content_rejected   sender    policy       content: links, attachments, header format
exceed_limit       sender    policy       a smaller message, fewer recipients at once
message_too_big    sender    policy       a smaller message (images linked, not attached)
policy_violation   sender    policy       the receiver's policy named in the diagnostic
syntax_error       sender    policy       report it: the toolkit sent something malformed
not_rfc_compliant  sender    policy       report it: a header of the message is malformed
filtered           unclear   policy       (the recipient's own filter)
system_full        unclear   soft
network_error      unclear   soft
system_error       unclear   soft
mailer_error       unclear   soft
on_hold            unclear   soft
undefined          unclear   soft
feedback           none      complaint    (ARF report, SES complaint, mail-client unsubscribe)
vacation           none      autoreply
delivered          none      (no bounce)
================== ========= ============ =====================================================

Precedence beyond the table's order: the diagnostic's words before the notice's, a specific
reason before a vague one (undefined, system/network/syntax error); a refusal of MAIL FROM is
``sender_rejected`` whatever its words; an unknown user refused at end of DATA is ``filtered``
(the address had been accepted); ``host_unknown`` on a 4.x.x status is ``network_error``.

>>> classify("5.1.1", 550, "5.1.1 <a@example.com>: Recipient address rejected: User unknown")
'user_unknown'
>>> classify("5.1.1", 550, "5.1.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org")
'blocked'
>>> REASONS["blocked"].side, REASONS["user_unknown"].side
('sender', 'recipient')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RECIPIENT = "recipient"
SENDER = "sender"
UNCLEAR = "unclear"
NONE = "none"
SIDES = (RECIPIENT, SENDER, UNCLEAR, NONE)


@dataclass(frozen=True)
class Reason:
    """One reason a delivery failed (or a non-failure notice), and what it means."""

    name: str
    side: str
    description: str
    remedy: str = ""
    hard: bool = False  # a permanent failure of the address (only recipient-side reasons)
    statuses: tuple[str, ...] = ()  # "X.1.1" style codes, class-less: "1.1" matches 4.1.1 and 5.1.1
    phrases: str = ""  # a regex over lowercased text

    @property
    def counts(self) -> bool:
        """Whether this reason may move the address toward suppression at all."""
        return self.side in (RECIPIENT, UNCLEAR)


_TABLE: tuple[Reason, ...] = (
    # --- about the sender: tried first, their wording is specific and they override codes ---
    Reason("no_ptr", SENDER, "our sending IP has no reverse DNS (PTR) or it does not match",
           "set a PTR record for the sending IP that resolves back to it (ask the IP's owner)",
           statuses=("7.25",),
           phrases=r"reverse (?:dns|lookup|hostname|address)|\bptr\b|rdns|no (?:dns|hostname) for|"
                   r"cannot find your hostname|client host rejected: cannot find|not resolve to|"
                   r"does not resolve|unresolvable (?:ip|address|host)|(?:ip )?name lookup failed|mismatch\w* (?:the )?client ip|"
                   r"unverif(?:i|y)able sending ip|no (?:reverse|ptr)|reverse (?:dns|lookup) (?:fail|error)"),
    Reason("auth_failure", SENDER, "our SPF, DKIM or DMARC check failed",
           "publish SPF for the sending IP, sign with DKIM, align the From domain with DMARC "
           "(`newsletter-kit check`)",
           statuses=("7.20", "7.21", "7.22", "7.23", "7.24", "7.26", "7.27"),
           phrases=r"\bspf\b|\bdkim\b|\bdmarc\b|sender policy framework|domainkeys|"
                   r"authentication (?:checks?|results?) (?:have |has )?fail|does not have authentication information|"
                   r"fails? to pass authentication|not authenticated by|unauthenticated (?:mail|email)"),
    Reason("blocked", SENDER, "our IP or server is on a blocklist or refused by the receiver",
           "check the sending IP on the blocklists named (spamhaus, spamcop, barracuda...), ask for "
           "delisting, and find why it was listed",
           statuses=("7.1",),
           phrases=r"block ?list|black ?list|blocked (?:using|by)|\bdnsbl|\brbl\b|spamhaus|spamcop|"
                   r"barracuda|sorbs|listed (?:at|on|in|by)|client host (?:\[[^\]]*\] )?(?:rejected|blocked)|"
                   r"access denied\b.*\bip|ip (?:address )?(?:\S+ )?(?:is |has been )?(?:blocked|banned|rejected|denied)|"
                   r"connection (?:refused|rejected|dropped) (?:from|by|due)|(?:your|sending) (?:ip|server|host|network) "
                   r"(?:\S+ )?(?:is |has been |was )?(?:blocked|banned|not allowed|rejected|denied|blacklisted)|"
                   r"use the smtp server of your isp|dynamic ip|dial-?up|residential ip|blocked ip|"
                   r"^\d{3}[ -]access denied|invalid ip for sending|ip (?:address )?(?:is )?not (?:authori[sz]ed|allowed|permitted) to send|\baccess denied\.{2,}|service refused|refused to talk to me"),
    Reason("bad_reputation", SENDER, "the receiver refuses us for poor reputation",
           "slow down, send only to engaged subscribers, and check the provider's postmaster tools",
           phrases=r"reputation|poor (?:sending )?history|low (?:sender )?score|unexpected volume|user complaints"),
    Reason("sender_rejected", SENDER, "our envelope sender or From address was refused",
           "make the bounce address and the From domain real, resolvable domains that accept mail",
           statuses=("1.7", "1.8"),
           phrases=r"sender (?:address )?(?:rejected|refused|denied|not allowed|invalid|unknown|domain)|"
                   r"sender verif\w* fail|verification of sender|sender (?:is )?not (?:authori[sz]ed|permitted)|"
                   r"bad sender|invalid sender|from address (?:is )?(?:rejected|invalid|not)|"
                   r"domain of sender address|sender domain|mail from (?:address )?(?:rejected|refused|not)|"
                   r"(?:do|does|may) not have permission to (?:post|send)|not (?:allowed|authori[sz]ed|permitted) to (?:post|send)|"
                   r"sender (?:address )?(?:is )?(?:blacklisted|blocked)|envelope sender"),
    Reason("relaying_denied", SENDER, "the server does not relay for us",
           "send through a server that accepts mail from us (check the SMTP settings and login)",
           statuses=("7.1",),
           phrases=r"relay(?:ing)? (?:access )?(?:denied|not (?:permitted|allowed)|prohibited|refused)|"
                   r"not (?:permitted|allowed) to relay|unable to relay|we do not relay|no relaying|"
                   r"relay not permitted|not our domain|insecure mail relay|open relay|address is not verified|identities failed the check"),
    Reason("security_error", SENDER, "the server requires authentication we did not give",
           "turn on authentication and check the user name and password",
           statuses=("7.0", "7.8", "7.9", "5.4"),
           phrases=r"authentication (?:is )?required|auth(?:entication)? (?:first|needed)|must (?:authenticate|login)|"
                   r"not authenticated|authentication failed|login (?:required|failed)|unauthenticated senders?|"
                   r"smtp auth|auth(?:entication)? (?:is )?required"),
    Reason("tls_required", SENDER, "the receiver requires TLS and we did not use it",
           "send with TLS (starttls or ssl)",
           statuses=("7.10", "7.11"),
           phrases=r"starttls|(?:tls|encryption) (?:is )?required|must issue a starttls|requires? (?:a )?(?:secure|encrypted)|"
                   r"(?:does not|doesn't) support (?:tls|ssl|encryption)|tls (?:is )?(?:not (?:available|supported|offered))|"
                   r"tls (?:handshake|negotiation) failed"),
    Reason("too_many_connections", SENDER, "we opened too many connections at once",
           "lower the number of parallel connections",
           statuses=("4.5", "7.0"),
           phrases=r"too many (?:concurrent |simultaneous )?connections|connection (?:limit|count)|"
                   r"too many sessions|maximum (?:number of )?connections|connection frequency|frequency limited|too many recipients\b(?! this)"),
    Reason("rate_limited", SENDER, "we sent too fast or too much for the receiver",
           "lower the daily limit or the send rate, and retry later",
           statuses=("7.28",),
           phrases=r"rate (?:limit|exceeded|control)|too (?:many|much) (?:messages|mail|email|recipients|data) "
                   r"(?:from|in|per|for|sent)|sending (?:too fast|rate)|throttl|slow down|"
                   r"exceeded (?:the )?(?:sending |message )?(?:rate|limit)|try (?:again )?later.{0,40}(?:volume|rate)|"
                   r"too many recipients this hour|receiving mail (?:at a rate|too quickly)|sending (?:is )?paused|(?:sent|sending) too many|too many messages"),
    Reason("not_rfc_compliant", SENDER, "our message does not follow the mail RFCs",
           "report it: a header of the message is malformed",
           statuses=("6.0",),
           phrases=r"(?:not|non)[ -](?:rfc ?\d* ?)?compliant|(?:violat\w*|conform\w* to|comply with) rfc|malformed (?:header|message)|"
                   r"bare (?:lf|cr)|invalid header|duplicate header|missing (?:the )?(?:date|from|message-id)|"
                   r"multiple (?:addresses in from|\w+ headers|from)|rfc ?\d{3,4} compliant"),
    Reason("virus_detected", SENDER, "our message was flagged as carrying a virus",
           "check the attachments and links of the campaign",
           statuses=("7.0",),
           phrases=r"\bvirus|malware|infected|trojan"),
    Reason("spam_detected", SENDER, "our message was judged to be spam",
           "review the content, links and sending history; make unsubscribing easy",
           statuses=("7.1",),
           phrases=r"\bspam\b|junk mail|unsolicited|bulk mail|considered as spam|identified as spam|spam ?assassin|"
                   r"message (?:looks|seems) like spam|\bube\b|spam classification|classified as spam|spam content|"
                   r"rejected (?:as|for) spam|mcspamsignature|\bspam score"),
    Reason("content_rejected", SENDER, "the receiver refused the content of our message",
           "check the content: links, attachments, header format",
           statuses=("6.0", "6.1", "6.2", "6.3", "6.4", "6.5", "7.0"),
           phrases=r"content (?:rejected|refused|filter|policy)|message (?:content )?(?:rejected|refused) (?:due|because)|"
                   r"(?:attachment|file) (?:type )?(?:is )?(?:not allowed|blocked|rejected|forbidden|prohibited)|banned (?:file|content)|"
                   r"forbidden (?:content|words|attachment)|improper use of 8-?bit|8-?bit data|"
                   r"message (?:was )?(?:rejected|refused) (?:by|due to) (?:the )?(?:content|policy)"),
    Reason("exceed_limit", SENDER, "our message exceeds a limit the recipient's side set for it",
           "make the message smaller, or send it to fewer recipients at once",
           phrases=r"exceeds? (?:the )?(?:size )?limit set by (?:the )?recipient|exceeds? (?:the )?recipient'?s? (?:size )?limit|"
                   r"limit set by (?:the )?recipient"),
    Reason("message_too_big", SENDER, "our message is larger than the receiver accepts",
           "make the message smaller (images linked, not attached)",
           statuses=("3.4", "2.3"),
           phrases=r"message (?:size|too (?:large|big))|(?:size|length) (?:limit|exceeds?)|too (?:large|big)|"
                   r"exceeds? (?:the )?(?:maximum |max )?(?:message )?size|message length exceeds"),
    Reason("policy_violation", SENDER, "refused by the receiver's policy about our message or server",
           "read the diagnostic: it names the receiver's policy",
           statuses=("7.0", "7.2", "7.3", "7.4", "7.5", "7.6", "7.7"),
           phrases=r"(?:local|security|content|anti-?spam|our|site) policy|policy (?:reasons?|violation|rejection|restriction)|"
                   r"rejected (?:by|due to|for) (?:\w+ ){0,2}polic(?:y|ies)|security policies|administrative prohibition|prohibited|"
                   r"protocol violation|content presents a potential"),
    Reason("syntax_error", SENDER, "our SMTP command or message was malformed",
           "report it: the toolkit sent something the server could not parse",
           statuses=("5.2", "5.1", "5.0"),
           phrases=r"syntax error|command unrecognized|bad sequence|unrecognized command|line too long|"
                   r"command parameter|parameter not implemented|not implemented"),
    # --- about the recipient ---
    Reason("mailbox_full", RECIPIENT, "the recipient's mailbox is full",
           statuses=("2.2", "2.4"),
           phrases=r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|exceed)|exceed\w* (?:the |his |her |its |their )?"
                   r"(?:storage |mailbox |disk )?(?:quota|allocation)|disk quota|insufficient (?:system )?(?:storage|space)|"
                   r"(?:mail ?folder|inbox|mailbox|account) (?:is )?(?:full|over ?quota)|mailbox size limit|"
                   r"storage (?:limit|quota)|mailbox exceeded|reached (?:\w+ )?quota|"
                   r"casella (?:di posta )?(?:\w+ )?piena|quota superata|superat[oa] (?:la |il )?(?:quota|limite|spazio)|"
                   r"spazio (?:esaurito|insufficiente)|casella (?:di posta )?(?:\w+ )?esaurita|mailbox is full|"
                   r"their mailbox is full|mailbox full|as their mailbox is full|over (?:the )?(?:storage|disk) (?:limit|quota)|"
                   r"not enough (?:storage|space)|storage space"),
    Reason("suspended", RECIPIENT, "the recipient's account is disabled or suspended",
           statuses=("2.1",),
           phrases=r"account (?:has been |is )?(?:disabled|suspended|deactivated|inactive|locked|frozen|expired)|"
                   r"mailbox (?:is )?(?:disabled|inactive|suspended|frozen)|user (?:is )?(?:suspended|disabled|inactive)|"
                   r"account (?:disattivato|disabilitato|sospeso)|disabled (?:recipient|account|mailbox|user)|"
                   r"temporar\w* locked|(?:account|mailbox|user) (?:is )?(?:temporarily )?locked|"
                   r"account (?:has been )?(?:disabled|discontinued|closed|blocked)|discontinued|"
                   r"(?:account|mailbox) (?:is )?(?:not active|inactive|deactivated)|(?:account|mailbox|address) (?:that )?(?:\w+ ){0,4}(?:is|has been) disabled"),
    Reason("has_moved", RECIPIENT, "the recipient has moved to another address", hard=True,
           statuses=("1.6",),
           phrases=r"has moved|moved to|no longer (?:with|at) (?:this|the)|changed (?:his|her|their) (?:e-?mail )?address|"
                   r"address (?:has )?changed|user has moved|new address|user not local"),
    Reason("host_unknown", RECIPIENT, "the recipient's domain does not exist or has no mail server", hard=True,
           statuses=("1.2", "4.4"),
           phrases=r"host (?:or domain name )?not found|unknown (?:host|domain)|domain (?:not found|does not exist|"
                   r"name not found)|no (?:such )?(?:mx|domain)|nxdomain|unrouteable (?:mail )?domain|"
                   r"name or service not known|host unknown|mx (?:record )?not found|unroute?able (?:address|mail domain)|non-?existent domain|(?<![@\w.-])(?:[a-z0-9-]+\.)+[a-z]{2,} does not exist|host \S+ not found|domain (?:is )?not (?:exist|valid)"),
    Reason("not_accept", RECIPIENT, "the recipient's domain accepts no mail (null MX)", hard=True,
           statuses=("1.10",),
           phrases=r"null mx|does not accept (?:any )?mail|accepts no mail"),
    Reason("user_unknown", RECIPIENT, "the recipient's address does not exist", hard=True,
           statuses=("1.1", "1.0", "1.3"),
           phrases=r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account|person)|"
                   r"unknown (?:recipient|address|mailbox|local)|(?:does not|doesn't|did not) exist|"
                   r"invalid (?:recipient|address|mailbox|user)|recipient (?:address )?rejected|"
                   r"mailbox (?:unavailable|not found|does not exist)|user not found|recipientnotfound|"
                   r"not a valid (?:mailbox|address|user)|bad (?:destination|recipient)|no mailbox|"
                   r"address (?:rejected|unknown)|unknown or illegal alias|"
                   r"utente (?:sconosciuto|inesistente|non (?:esistente|valido|trovato))|"
                   r"indirizzo (?:inesistente|non (?:valido|esistente)|errato|sconosciuto)|"
                   r"destinatario (?:inesistente|sconosciuto|non (?:valido|esistente))|"
                   r"casella (?:di posta )?(?:inesistente|non (?:esistente|attiva))|non esiste|"
                   r"no longer (?:valid|active|exists?|in use|available)|not our customer|"
                   r"(?:doesn't|does not|don't) have an? (?:\S+ )?account|recipient not found|"
                   r"not (?:a )?(?:known|valid) (?:user|recipient)|no such (?:local )?user|unknown or invalid|"
                   r"user (?:doesn't|does not) exist|account (?:does not|doesn't) exist|no account by that name|"
                   r"recipient unknown|invalid user|unknown address|address (?:is )?(?:wrong|invalid|not valid)|"
                   r"wrong or no longer valid|(?:wasn't|was not) found at|address (?:not found|(?:couldn't|could not|can't|cannot) be found)|"
                   r"check (?:if|that|whether) (?:the )?(?:e-?mail )?address is correct|not listed in|was not found|could not be found|unknown in"),
    Reason("expired", RECIPIENT, "delivery was retried until it expired",
           statuses=("4.7",),
           phrases=r"delivery time expired|retry time(?:out)? (?:exceeded|expired)|message expired|"
                   r"could not be delivered (?:for|within) \d+|retry timeout|retry period|too long in (?:the )?queue|"
                   r"been in (?:the )?queue too long|queue expired|expired after|have expired|"
                   r"unable to deliver (?:it )?for \d+|gave up after|did not accept our requests to connect"),
    # --- unclear: counts as soft ---
    Reason("filtered", UNCLEAR, "refused by the recipient's own filter",
           statuses=("2.0",),
           phrases=r"(?:recipient|user)'?s? (?:filter|rules)|refused by (?:the )?recipient|does not (?:want|accept) mail from"),
    Reason("system_full", UNCLEAR, "the receiving system is out of space", statuses=("3.1",),
           phrases=r"(?:disk|system|file ?system) (?:is )?full|out of (?:disk )?space|insufficient system resources|"
                   r"insufficient disk space|no space left"),
    Reason("network_error", UNCLEAR, "the receiving server could not be reached",
           statuses=("4.0", "4.1", "4.2", "4.3", "4.6"),
           phrases=r"connection (?:timed out|refused|reset)|network (?:error|unreachable)|no route to host|"
                   r"dns (?:error|failure|lookup)|temporary (?:lookup|dns)|mail (?:loop|forwarding loop)|too many hops|"
                   r"name service error|malformed or unexpected name server|host not reachable|"
                   r"network error|unable to (?:connect|establish)|could not connect|wasn't able to establish|"
                   r"timed out|loop (?:detected|alert)|routing loop"),
    Reason("system_error", UNCLEAR, "the receiving system failed", statuses=("3.0", "3.5", "0.0"),
           phrases=r"system error|internal (?:server )?error|local error|temporary (?:failure|error)|server error|"
                   r"service (?:temporarily )?unavailable"),
    Reason("mailer_error", UNCLEAR, "the receiving mailer program failed",
           phrases=r"mailer error|mail delivery (?:program|agent) failed|pipe to|command (?:died|failed)|\bprocmail\b|"
                   r"local delivery failed|mailbox delivery failed|unknown mailer error|exit (?:code|status) \d+"),
    Reason("on_hold", UNCLEAR, "held by the receiver without a verdict"),
    Reason("undefined", UNCLEAR, "the notice gives no reason we can read"),
    # --- not failures ---
    Reason("feedback", NONE, "a complaint (ARF feedback report)"),
    Reason("vacation", NONE, "an auto-reply"),
    Reason("delivered", NONE, "a success notice"),
)

#: name -> Reason, in the table's order of precedence.
REASONS: dict[str, Reason] = {r.name: r for r in _TABLE}
_PHRASED = [r for r in _TABLE if r.phrases]
# One pass over the text instead of one per reason: each reason's phrases are a named group of one
# alternation, and the reason that wins is the first in the table among those found.
# The search costs time in proportion to the text (Python's re tries every alternative at every
# word start): a failure's words come first, so only the start of a long text is read.
# Every phrase starts a word: "\b(?=\w)" tries the alternation at word starts only.
_ANY_PHRASE = re.compile(r"\b(?=\w)(?:" + "|".join(f"(?P<r{i}>{r.phrases})" for i, r in enumerate(_PHRASED)) + ")")
_MAX_TEXT = 2000
_SPACES_RE = re.compile(r"\s+")
# A multi-line reply quoted on one line repeats its code mid-sentence ("multiple 550-5.7.1 addresses"):
# dropped so that the words meet again.
_CONTINUED_RE = re.compile(r"(?<=[a-z,;:]) [245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?")
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def side(reason: str | None) -> str:
    """The side a reason is about; an unknown or missing reason is ``unclear``.

    >>> side("mailbox_full"), side("blocked"), side(None)
    ('recipient', 'sender', 'unclear')
    """
    found = REASONS.get(reason or "")
    return found.side if found else UNCLEAR


def remedy(reason: str | None) -> str:
    """What the analyst can do about a sender-side reason ('' for others).

    >>> remedy("no_ptr").startswith("set a PTR")
    True
    """
    found = REASONS.get(reason or "")
    return found.remedy if found else ""


def from_text(text: str) -> str | None:
    """The first reason (in precedence order) whose phrases the text uses; None when none does."""
    if not text:
        return None
    low = _CONTINUED_RE.sub(" ", _SPACES_RE.sub(" ", text[:_MAX_TEXT].lower()))
    best = len(_PHRASED)
    for match in _ANY_PHRASE.finditer(low):
        index = int(match.lastgroup[1:])  # type: ignore[index]
        if index < best:
            best = index
            if best == 0:
                break
    return _PHRASED[best].name if best < len(_PHRASED) else None


def from_status(status: str | None) -> str | None:
    """The reason an RFC 3463 code alone suggests (its subject and detail); None when none."""
    if not status:
        return None
    match = _STATUS_RE.search(status)
    if not match:
        return None
    key = f"{match.group(2)}.{match.group(3)}"
    for reason in _TABLE:
        if key in reason.statuses:
            return reason.name
    return None


def classify(status: str | None, reply_code: int | str | None, text: str | None) -> str:
    """The reason of one failure from its status, reply code and text: the text first.

    >>> classify("5.1.8", 553, "<bounces@shop.example>: Sender address rejected: Domain not found")
    'sender_rejected'
    >>> classify("5.2.2", 552, "")
    'mailbox_full'
    >>> classify(None, None, "")
    'undefined'
    """
    worded = from_text(text or "")
    if worded is not None:
        return worded
    coded = from_status(status)
    if coded is not None:
        return coded
    return "undefined"


def is_hard(reason: str, reply_code: int | str | None = None, status: str | None = None) -> bool:
    """A permanent failure of the address: user/host unknown, moved, and not_accept on a 5xx.

    >>> is_hard("user_unknown"), is_hard("blocked"), is_hard("not_accept", 450)
    (True, False, False)
    """
    found = REASONS.get(reason)
    if found is None or not found.hard:
        return False
    if reason == "not_accept":
        code = str(reply_code or status or "5")
        return code.startswith("5")
    return True
