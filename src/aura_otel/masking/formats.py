"""The secret-format rule table: every shape of secret and PII that the value scan looks for.

This module is data: a reviewer can check each rule against its vendor's documented format
without reading the scanner. Rules are RE2 (linear time, no backtracking, no look-around). They
are combined into one alternation in the order given here; at one position the first rule that
matches wins (leftmost-first), so identifiers that must survive come before the hex rule, and
key-value forms before the bare-token rules.

A rule's :class:`Action` says what the scanner does with a match; the validity checks (Luhn,
IBAN mod-97, SSN area rules, digit counts, randomness) live in :mod:`.checks`, so a broad
pattern here costs nothing on clean text and a candidate that fails its check is kept.

The reference list of token formats is gitleaks' default rule set and detect-secrets' plugins;
``tests/masking/formats.py`` holds a generated example for each of their rules.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import re2

if TYPE_CHECKING:
    from .settings import MaskingRules


class Action(enum.IntEnum):
    """What the scanner does with a match (one handler each)."""

    KEEP = enum.auto()  # an identifier that must survive: skip it whole
    REDACT = enum.auto()  # the whole match is the secret
    RANDOM = enum.auto()  # the whole match, if it looks random (mixed classes, no plain word)
    VALUE = enum.auto()  # only the ``val`` group is the secret; what precedes it is scanned
    FLAG = enum.auto()  # ``--<key> <value>``: the value, if the key is sensitive
    URL = enum.auto()  # ``scheme://user:pass@``: the credentials
    COOKIE = enum.auto()  # a cookie header: every pair to the end of the line
    KEY_VALUE = enum.auto()  # ``key=value``: the value, if the key is sensitive
    QUERY_PARAMETER = enum.auto()  # ``?key=value``: likewise, with the query-only words
    AUTH_SCHEME = enum.auto()  # ``Bearer <token>``: the token, if it looks like one
    ENTROPY = enum.auto()  # a random-looking value right after a credential word
    EMAIL = enum.auto()
    CARD = enum.auto()
    PHONE = enum.auto()  # international: + and 8-15 digits
    PHONE_NATIONAL = enum.auto()  # (415) 215-0283, 020 7946 0958, 0044 20 7946 0958
    IBAN = enum.auto()
    SSN = enum.auto()
    NINO = enum.auto()


@dataclass(frozen=True, slots=True)
class Rule:
    """A named pattern and what its matches become; the name is what tests and logs cite."""

    name: str
    pattern: str
    action: Action


KEY_CHAR: Final = r"[A-Za-z0-9_.\-]"
_KV_VALUE = r"""(?:"[^"\n]*"?|'[^'\n]*'?|(?i:bearer|basic|token)[ \t]+[^\s"'&,;]+|[^\s"'&,;]+)"""
#: Characters of an unquoted command-line value.
_ARG = r"""(?:"[^"\n]*"|'[^'\n]*'|[^\s"'`;|&]+)"""
_B64 = r"[A-Za-z0-9+/]"
_EMAIL_LOCAL = r"[A-Za-z0-9._%+\-\x{80}-\x{10FFFF}]"
_EMAIL_LABEL = r"[A-Za-z0-9\-\x{80}-\x{10FFFF}]"
_NON_ASCII_ALPHA = r"[A-Za-z\x{80}-\x{10FFFF}]"
_B64URL = r"[A-Za-z0-9_\-]"


def key_pattern(words: Sequence[str], glued: Sequence[str] = ()) -> str:
    """A key holding one of ``words`` as a whole word, approximately, in RE2 (no look-around):
    the word starts the key or follows a separator or digit (or is Capitalised, camelCase) and
    is not followed by a lower-case letter; a ``glued`` ending may follow any letters
    (``PGPASSWORD``, upper case: env-style names). So ``max_tokens``, ``keyframe`` and ``monkey`` are not even candidates;
    :func:`.keys.key_words` makes the exact decision on what is."""
    ordered = sorted(set(words), key=len, reverse=True)
    lower = "|".join(re2.escape(w) for w in ordered)
    capital = "|".join(
        f"{re2.escape(w[0].upper())}(?i:{re2.escape(w[1:])})"
        if len(w) > 1
        else re2.escape(w.upper())
        for w in ordered
        if w[0].isalpha()
    )
    start = rf"(?:{KEY_CHAR}*[0-9_.\-]|\b)(?i:{lower})"
    if capital:
        start = rf"(?:{start}|{KEY_CHAR}*(?:{capital}))"
    if glued:  # env-style names only (PGPASSWORD): upper case keeps the automaton small
        suffixes = "|".join(
            re2.escape(s.upper()) for s in sorted(set(glued), key=len, reverse=True)
        )
        start = rf"(?:{start}|\b[A-Z0-9]+(?:{suffixes}))"
    return rf"{start}(?:[A-Z0-9_.\-]{KEY_CHAR}*)?"


#: Vendor tokens recognisable by their prefix or shape alone (gitleaks and detect-secrets
#: formats). Each is masked whole wherever it appears.
VENDOR_TOKENS: Final[tuple[tuple[str, str], ...]] = (
    # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-api03-, sk-ant-admin01-).
    ("sk_key", r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{15,}"),
    # Stripe secret/restricted keys and webhook secrets.
    ("stripe", r"\b(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9]{16,}"),
    # ElevenLabs (sk_ + 48 hex), Freemius (sk_ + 29) and other sk_ secret keys.
    ("sk_underscore_key", r"\bsk_[A-Za-z0-9]{24,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{30,}"),
    ("google_oauth_client_secret", r"\bGOCSPX-[A-Za-z0-9_\-]{20,}"),
    ("google_oauth_refresh_token", r"\b1//0[A-Za-z0-9_\-]{30,}"),
    ("google_oauth_access_token", r"\bya29\.[A-Za-z0-9_\-]{20,}"),
    (
        "aws_access_key_id",
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b",
    ),
    (
        "aws_bedrock_api_key",
        r"\bABSK[A-Za-z0-9+/]{100,}={0,2}|\bbedrock-api-key-[A-Za-z0-9+/=]{20,}",
    ),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    (
        "gitlab",
        r"\b(?:gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas|ffct)-[A-Za-z0-9_\-.]{20,}|GR1348941[A-Za-z0-9_\-]{20,})",
    ),
    ("gitlab_session_cookie", r"\b_gitlab_session=[0-9a-z]{32}"),
    ("slack", r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9\-]{10,}|\bxoxe\.xox[bp]-[A-Za-z0-9\-]{20,}"),
    ("slack_webhook", r"\bhooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,}"),
    (
        "discord_webhook",
        r"\b(?:discord|discordapp)\.com/api/webhooks/[0-9]{16,20}/[A-Za-z0-9_\-]{40,}",
    ),
    (
        "discord_bot_token",
        r"\b[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40}",
    ),
    ("teams_webhook", r"\b[A-Za-z0-9\-]+\.webhook\.office\.com/webhook(?:b2)?/[^\s\"'<>]{20,}"),
    ("ifttt_webhook", r"\bmaker\.ifttt\.com/trigger/[^\s\"'<>/]+/with/key/[A-Za-z0-9_\-]{16,}"),
    ("telegram_bot_token", r"(?:\b|(?:/bot))[0-9]{5,16}:A[A-Za-z0-9_\-]{33,35}\b"),
    ("npm", r"\bnpm_[A-Za-z0-9]{36}"),
    ("pypi", r"\bpypi-AgE[A-Za-z0-9_\-]{50,}"),
    ("rubygems", r"\brubygems_[a-f0-9]{48}"),
    ("clojars", r"\b(?i:CLOJARS_)[a-z0-9]{60}"),
    ("sendgrid", r"\bSG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}"),
    ("sendinblue", r"\bxkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}"),
    ("mailgun", r"\b(?:key|pubkey)-[0-9a-f]{32}\b|\b[0-9a-h]{32}-[0-9a-h]{8}-[0-9a-h]{8}\b"),
    ("mailchimp", r"\b[0-9a-f]{32}-us[0-9]{1,2}\b"),
    ("twilio", r"\b(?:AC|SK)[0-9a-fA-F]{32}\b"),
    ("huggingface", r"\b(?:hf_|api_org_)[A-Za-z0-9]{30,}"),
    ("vault", r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,}"),
    ("databricks", r"\bdapi[a-f0-9]{32}(?:-[0-9])?"),
    ("digitalocean", r"\bdo[opr]_v1_[a-f0-9]{64}"),
    ("shopify", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("atlassian", r"\bAT[AC]TT[A-Za-z0-9_\-=]{40,}"),
    ("postman", r"\bPMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}"),
    ("new_relic", r"\bNR(?:AK|JS|II|AA|RA|SP)-[A-Za-z0-9\-]{19,40}"),
    ("docker_hub", r"\bdckr_(?:pat|oat)_[A-Za-z0-9_\-]{20,}"),
    ("azure_ad_client_secret", r"\b[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}"),
    ("azure_storage_account_key", r"\bAccountKey=[A-Za-z0-9+/=]{40,}"),
    ("age_secret_key", r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    (
        "onepassword",
        r"\bA3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}\b|\bops_eyJ[A-Za-z0-9+/]{100,}={0,3}",
    ),
    ("adobe_client_secret", r"\bp8e-[A-Za-z0-9]{32}"),
    ("airtable_pat", r"\bpat[A-Za-z0-9]{14}\.[a-f0-9]{64}"),
    ("alibaba_access_key_id", r"\bLTAI[A-Za-z0-9]{20}"),
    ("artifactory", r"\bAKCp[A-Za-z0-9]{60,}|\bcmVmd[A-Za-z0-9]{59}"),
    (
        "authress",
        r"\b(?:sc|ext|scauth|authress)_[A-Za-z0-9]{5,30}\.[A-Za-z0-9]{4,6}\.acc[_\-][A-Za-z0-9\-]{10,32}\.[A-Za-z0-9+/_=\-]{30,120}",
    ),
    ("clickhouse", r"\b4b1d[A-Za-z0-9]{38}\b"),
    ("cloudflare_origin_ca_key", r"\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}"),
    ("defined_networking", r"\bdnkey-[A-Za-z0-9=_\-]{26}-[A-Za-z0-9=_\-]{52}"),
    ("doppler", r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}"),
    ("duffel", r"\bduffel_(?:test|live)_[A-Za-z0-9_\-=]{43}"),
    ("dynatrace", r"\bdt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}"),
    ("easypost", r"\bEZ[AT]K[A-Za-z0-9]{54}"),
    (
        "facebook_access_token",
        r"\bEAA[MC][A-Za-z0-9]{100,}|\b[0-9]{15,16}(?:\||%7C)[0-9A-Za-z\-_]{27,40}",
    ),
    ("flutterwave", r"\bFLW(?:SECK|PUBK)_TEST-[A-Za-z0-9]{12,32}(?:-X)?"),
    ("flyio", r"\bfo1_[A-Za-z0-9_\-]{43}|\bfm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3}"),
    ("frameio", r"\bfio-u-[A-Za-z0-9\-_=]{64}"),
    (
        "grafana",
        r"\beyJrIjoi[A-Za-z0-9]{70,400}={0,3}|\bglc_[A-Za-z0-9+/]{32,400}={0,3}|\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
    ),
    ("harness", r"\b(?:pat|sat)\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}"),
    ("hashicorp_terraform", r"\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9\-_=]{60,70}"),
    ("heroku", r"\bHRKU-AA[0-9A-Za-z_\-]{58}"),
    ("infracost", r"\bico-[A-Za-z0-9]{32}"),
    ("intra42", r"\bs-s4t2(?:ud|af)-[a-fA-F0-9]{64}"),
    ("linear", r"\blin_(?:api|oauth)_[A-Za-z0-9]{40}"),
    ("maxmind", r"\b[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk\b"),
    ("notion", r"\bntn_[0-9]{11}[A-Za-z0-9]{35}|\bsecret_[A-Za-z0-9]{43}\b"),
    ("octopus_deploy", r"\bAPI-[A-Z0-9]{26}\b"),
    ("openshift", r"\bsha256~[A-Za-z0-9_\-]{43}"),
    ("perplexity", r"\bpplx-[A-Za-z0-9]{48}"),
    ("planetscale", r"\bpscale_(?:tkn|oauth|pw)_[A-Za-z0-9=._\-]{32,64}"),
    ("prefect", r"\bpnu_[A-Za-z0-9]{36}"),
    ("pulumi", r"\bpul-[a-f0-9]{40}"),
    ("readme", r"\brdme_[a-z0-9]{70}"),
    ("scalingo", r"\btk-us-[A-Za-z0-9_\-]{48}"),
    ("sentry", r"\bsntry[us]_[A-Za-z0-9+/=_]{40,}"),
    ("settlemint", r"\bsm_(?:aat|pat|sat)_[A-Za-z0-9]{16}"),
    ("shippo", r"\bshippo_(?:live|test)_[a-fA-F0-9]{40}"),
    ("sourcegraph", r"\bsgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}"),
    ("square", r"\b(?:EAAA|sq0atp-|sq0csp-)[A-Za-z0-9_\-]{22,60}"),
    ("sonar", r"\bsq[upa]_[a-f0-9]{40}"),
    ("typeform", r"\btfp_[A-Za-z0-9\-_.=]{59}"),
    (
        "yandex",
        r"\bt1\.[A-Za-z0-9_\-]+=*\.[A-Za-z0-9_\-]{86}|\bAQVN[A-Za-z0-9_\-]{35,38}|\bYC[A-Za-z0-9_\-]{38}\b",
    ),
    (
        "sidekiq",
        r"\bBUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM[ \t]*[:=][ \t]*[\"']?[0-9a-f]{8}:[0-9a-f]{8}",
    ),
    ("jwt_base64", r"\bZXlK[A-Za-z0-9+/]{30,}={0,2}"),
)


#: Where a token may start besides a word boundary: right after an escape that text written
#: as JSON, a repr or a URL puts before it (``"...\\nsk-..."``, ``%3Dghp_...``), where the
#: escape's letter or digit hides the boundary. The escape is masked with the token.
ESCAPED_START = r"(?:\b|\\[nrtbfv]|\\u[0-9a-fA-F]{4}|%[0-9A-Fa-f]{2})"


def escaped_start(pattern: str) -> str:
    """``pattern`` with each leading ``\\b`` of its top-level alternatives widened to
    :data:`ESCAPED_START` (only the token rules: a plain redaction masks the whole match)."""
    out: list[str] = []
    depth = 0
    alternative_start = True
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if alternative_start and pattern.startswith("\\b", i):
            out.append(ESCAPED_START)
            i += 2
            alternative_start = False
            continue
        alternative_start = False
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":  # a class: copied whole (no groups or alternatives inside)
            end = i + 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            out.append(pattern[i : end + 1])
            i = end + 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            alternative_start = True
        out.append(char)
        i += 1
    return "".join(out)


def builtin_rules(
    key_words_in_text: Sequence[str], glued: Sequence[str], rules: MaskingRules
) -> list[Rule]:
    """The built-in rules, in priority order."""
    key = key_pattern(key_words_in_text, glued)
    out = [
        # Structural identifiers in text: W3C traceparent and labelled ids survive.
        Rule("traceparent", r"\b[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\b", Action.KEEP),
        Rule(
            "labelled_id",
            r"""\b(?i:trace|span|parent|job|correlation|request)[_. \-]?(?i:id)["']?\s*[:=]?\s*["']?[0-9a-fA-F]{16,64}\b""",
            Action.KEEP,
        ),
        Rule(
            "pem_private_key",
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|[\s\S]*)",
            Action.REDACT,
        ),
        # A PEM body without its BEGIN line: base64 lines up to the END line, or the first
        # line of a DER private key / OpenSSH key on its own (MII..., b3BlbnNzaC1rZXktdjE...).
        # (Body lines are matched from a line start only: prose pays nothing for this rule.)
        Rule(
            "pem_body",
            rf"(?:^|\n)[ \t]*(?P<val>(?:{_B64}{{16,}}={{0,2}}[ \t]*\r?\n[ \t]*)+-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----)",
            Action.VALUE,
        ),
        Rule(
            "der_private_key",
            rf"\b(?:MII[A-Za-z0-9+/]{{60,}}|b3BlbnNzaC1rZXktdjE{_B64}{{40,}})(?:={{0,2}}\s*{_B64}{{16,}})*={{0,2}}",
            Action.REDACT,
        ),
        Rule(
            "url_credentials",
            r"""(?P<url_scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<url_cred>[^\s/?#@:"'<>]*:[^\s/"'<>]+)@""",
            Action.URL,
        ),
        Rule(
            "cookie",
            r"""(?P<ck_key>\b(?i:(?:set-)?cookie))(?P<ck_sep>["']?\s*[:=]\s*)(?P<ck_val>"[^"\n]*"?|'[^'\n]*'?|[^\s"'][^\n"']*)""",
            Action.COOKIE,
        ),
        # URL query parameters: also sig/signature/auth and a whole-key code (?code=...).
        Rule(
            "query_parameter",
            rf"""[?&;](?P<qp_key>{KEY_CHAR}*(?i:sig|auth|code){KEY_CHAR}*)(?P<qp_sep>=)(?P<qp_val>[^\s&#"'<>]+)""",
            Action.QUERY_PARAMETER,
        ),
        # Command lines: curl -u user:pass, mysql -pSecret, aws configure set <key> <value>,
        # and --<sensitive key> <value> with a space. (An all-digit -u value is a uid:gid,
        # as in docker run -u 1000:1000.)
        Rule(
            "cli_user_password",
            r"""(?:^|[ \t])(?:-u|--user)(?:=|[ \t]+)(?P<val>"[^"\n:]*:[^"\n]+"|'[^'\n:]*:[^'\n]+'|[^\s"':]*:[^\s"']*[^\s"'0-9][^\s"']*)""",
            Action.VALUE,
        ),
        Rule(
            "cli_mysql_password",
            rf"""\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?[ \t](?:-p|--password=)(?P<val>{_ARG})""",
            Action.VALUE,
        ),
        Rule(
            "cli_aws_configure",
            rf"""\baws[ \t]+configure[ \t]+set[ \t]+(?P<fl_key>{KEY_CHAR}+)[ \t]+(?P<fl_val>{_ARG})""",
            Action.FLAG,
        ),
        Rule(
            "cli_flag",
            r"""(?:^|\s)--(?P<fl_key>[a-z0-9\-]*(?:password|passwd|passphrase|pass|token|secret|key|pwd|auth)[a-z0-9\-]*)[ \t]+(?P<fl_val>"[^"\n]*"|'[^'\n]*'|[^\s"'\-][^\s"']*)""",
            Action.FLAG,
        ),
        Rule(
            "key_value",
            rf"""(?P<kv_key>{key})(?P<kv_sep>(?:["']|%2[27])?\s*(?:=>|[:=]|%3[AaDd])\s*)(?P<kv_val>{_KV_VALUE})""",
            Action.KEY_VALUE,
        ),
        Rule(
            "nuget_password",
            r"""<add[ \t]+key=["'][^"'\n]*(?i:password)[^"'\n]*["'][ \t]+value=["'](?P<val>[^"'\n]+)""",
            Action.VALUE,
        ),
        Rule(
            "auth_scheme",
            escaped_start(r"\b(?i:bearer|basic)[ \t]+(?P<cred>[A-Za-z0-9._~+/\-]{8,}=*)"),
            Action.AUTH_SCHEME,
        ),
        Rule(
            "jwt",
            escaped_start(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){1,3}"),
            Action.REDACT,
        ),
        *(Rule(name, escaped_start(pattern), Action.REDACT) for name, pattern in VENDOR_TOKENS),
        Rule("vault_legacy_token", escaped_start(r"\bs\.[A-Za-z0-9]{24}\b"), Action.RANDOM),
        # A long random-looking value right after a credential word ("the token is <x>",
        # "secret <x>"): the high-entropy backstop; .checks.random_like decides.
        Rule(
            "entropy_after_credential_word",
            escaped_start(
                r"""\b(?i:api[ _\-]?keys?|keys?|tokens?|secrets?|passwords?|passphrase|credentials?|signature|apikey)\b[ \t]*(?:(?i:is|was|of|=|:|=>)[ \t]*)?["'`]?(?P<ent_val>[A-Za-z0-9+/_\-~.]{20,}={0,2})"""
            ),
            Action.ENTROPY,
        ),
        # Also after 0x (an Ethereum private key, a hex dump).
        Rule("long_hex", escaped_start(r"\b(?:0[xX])?[0-9a-fA-F]{32,}\b"), Action.REDACT),
    ]
    if rules.mask_email:
        # Unicode local parts and internationalised domains (and their xn-- form); %40 is a
        # percent-encoded @. .checks rejects asset names such as thumbnail@2x.png.
        out.append(
            Rule(
                "email",
                # Non-ASCII as one range, not \p{L}: Unicode classes split the automaton's byte
                # classes and slow every scan; .checks.email_parts checks the letters.
                rf"{_EMAIL_LOCAL}+(?:@|%40){_EMAIL_LABEL}+(?:\.{_EMAIL_LABEL}+)*\.(?:{_NON_ASCII_ALPHA}{{2,}}|xn--[A-Za-z0-9\-]+)",
                Action.EMAIL,
            )
        )
    if rules.mask_iban:
        out.append(Rule("iban", r"\b[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,32}\b", Action.IBAN))
    if rules.mask_ssn:
        out.append(
            Rule(
                "ssn",
                r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b"
                r"|\b(?i:ssn|social security(?: number)?)(?:#|:|=|\s)*[0-9]{9}\b",
                Action.SSN,
            )
        )
    if rules.mask_nino:
        out.append(
            Rule(
                "nino",
                r"\b[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b",
                Action.NINO,
            )
        )
    if rules.mask_phone:
        out.append(Rule("phone", r"\B\+[0-9](?:[ .\-]?\(?[0-9]+\)?)+", Action.PHONE))
        out.append(
            Rule(
                "phone_national",
                r"\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}\b"  # (415) 215-0283
                r"|\b\d{3}[ .\-]\d{3}[ .\-]\d{4}\b"  # 415-215-0283, 415.215.0283
                r"|\b00[1-9]\d{0,2}(?:[ .\-]?\d{1,4}){2,6}\b"  # 0044 20 7946 0958
                r"|\b0[1-9]\d{1,4}[ \-]\d{3,4}[ \-]?\d{3,4}\b",  # 020 7946 0958, 07700 900123
                Action.PHONE_NATIONAL,
            )
        )
    if rules.mask_card:
        out.append(Rule("card", r"\b[0-9](?:[ .\-]?[0-9]){12,}\b", Action.CARD))
    return out
