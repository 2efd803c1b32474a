"""Realistic secrets and PII (generated and hand-written, every rule), and a benign corpus.

Each secret is the text as it would appear (``text``) and the substrings that must never leave
the process (``needles``). Needles hold no quote, backslash or line break, so a search in a
JSON or protobuf string finds them exactly as written.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

_RNG_SEED = 20261124
ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Secret:
    rule: str
    text: str
    needles: tuple[str, ...]


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch)
            if i % 2:
                d *= 2
                d -= 9 if d > 9 else 0
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def _group(number: str, sizes: tuple[int, ...], sep: str) -> str:
    out, pos = [], 0
    for size in sizes:
        out.append(number[pos : pos + size])
        pos += size
    return sep.join(out)


def _generated(rng: random.Random) -> list[Secret]:
    items: list[Secret] = []

    def add(rule: str, text: str, *needles: str) -> None:
        items.append(Secret(rule, text, needles or (text,)))

    for _ in range(8):
        key = "sk-" + _r(rng, ALNUM, 48)
        add("openai", f"OpenAI call failed with key {key}", key)
        key = "sk-proj-" + _r(rng, B64URL, 64)
        add("openai", key)
        key = "sk-ant-api03-" + _r(rng, B64URL, 93) + "AA"
        add("anthropic", f"x-api-key {key}", key)
        key = "AIza" + _r(rng, B64URL, 35)
        add("google", f"https://maps.example.com/geo?center=paris&k={key}", key)
        key_id = rng.choice(["AKIA", "ASIA"]) + _r(rng, string.ascii_uppercase + string.digits, 16)
        add("aws_access_key_id", f"aws access key {key_id} rejected", key_id)
        secret = _r(rng, ALNUM + "/+", 40)
        add("aws_secret", f"aws_secret_access_key={secret}", secret)
        add("aws_secret", f"AWS_SECRET_ACCESS_KEY: {secret[::-1]}", secret[::-1])
        add("github", "ghp_" + _r(rng, ALNUM, 36))
        add("github", "gho_" + _r(rng, ALNUM, 36))
        add("github", "github_pat_" + _r(rng, ALNUM, 22) + "_" + _r(rng, ALNUM, 59))
        add(
            "slack",
            f"xox{rng.choice('abprs')}-{_r(rng, string.digits, 12)}-{_r(rng, string.digits, 13)}-{_r(rng, ALNUM, 24)}",
        )
        add("stripe", "sk_live_" + _r(rng, ALNUM, 24))
        add("stripe", "rk_live_" + _r(rng, ALNUM, 24))
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"sub": _r(rng, string.digits, 8), "name": "Jo"}).encode())
        jwt = f"{header}.{payload}.{_r(rng, B64URL, 43)}"
        add("jwt", f"session {jwt}", jwt)
        token = _r(rng, B64URL + ".", 40)
        add("bearer", f"Authorization: Bearer {token}", token)
        basic = base64.b64encode(
            f"{_r(rng, string.ascii_lowercase, 6)}:{_r(rng, ALNUM, 12)}".encode()
        ).decode()
        add("basic", f"auth header was Basic {basic}", basic)
        body = [_r(rng, ALNUM + "+/", 64) for _ in range(4)]
        kind = rng.choice(["RSA ", "EC ", "", "OPENSSH "])
        pem = (
            f"-----BEGIN {kind}PRIVATE KEY-----\n"
            + "\n".join(body)
            + f"\n-----END {kind}PRIVATE KEY-----"
        )
        add("pem", pem, *body)
        user, password = _r(rng, string.ascii_lowercase, 7), _r(rng, ALNUM, 16)
        scheme = rng.choice(["postgres", "mysql", "redis", "https", "amqp"])
        add(
            "url_credentials",
            f"{scheme}://{user}:{password}@db.internal:5432/app",
            password,
            f"{user}:{password}",
        )
        value = _r(rng, ALNUM, 24)
        param = rng.choice(["api_key", "token", "access_token", "sig", "X-Amz-Signature", "apikey"])
        add(
            "query",
            f"https://cdn.example.com/v1/clip.mp4?expires=1732492800&{param}={value}&page=2",
            value,
        )
        add("long_hex", f"checksum {_r(rng, HEX, rng.choice([32, 40, 64]))}".split()[1])
        value = _r(rng, ALNUM, 18)
        form = rng.choice(
            [
                "password={v}",
                "secret: {v}",
                "api-key: {v}",
                "client_secret={v}",
                '"apiKey": "{v}"',
                "x-api-key: {v}",
                "db_passwd={v}",
                "PRIVATE_KEY={v}",
                "refreshToken={v}",
                "session_cookie={v}",
            ]
        )
        add("key_value", form.format(v=value), value)
        name = _r(rng, string.ascii_lowercase, 6) + "." + _r(rng, string.ascii_lowercase, 5)
        add("email", f"{name}@{rng.choice(['example.com', 'studio.io', 'mail.example.co.uk'])}")
        for prefix, length, sizes in (
            ("4", 16, (4, 4, 4, 4)),
            ("51", 16, (4, 4, 4, 4)),
            ("37", 15, (4, 6, 5)),
            ("6011", 16, (4, 4, 4, 4)),
        ):
            number = _luhn_complete(prefix, length, rng)
            add("card", _group(number, sizes, rng.choice([" ", "-", ""])))
        phone = rng.choice(
            [
                f"+1 {_r(rng, '23456789', 3)} {_r(rng, string.digits, 3)} {_r(rng, string.digits, 4)}",
                f"+44 20 {_r(rng, string.digits, 4)} {_r(rng, string.digits, 4)}",
                f"+49 151 {_r(rng, string.digits, 8)}",
                f"+33 6 {_r(rng, string.digits, 2)} {_r(rng, string.digits, 2)} {_r(rng, string.digits, 2)} {_r(rng, string.digits, 2)}",
                f"+1 ({_r(rng, '23456789', 3)}) {_r(rng, string.digits, 3)}-{_r(rng, string.digits, 4)}",
                f"+81{_r(rng, string.digits, 10)}",
            ]
        )
        add("phone", phone)
    return items


HAND_WRITTEN: list[Secret] = [
    # the spec's seeds
    Secret("openai", "sk-1234567890abcdef", ("sk-1234567890abcdef",)),
    Secret(
        "openai",
        "API error: sk-1234567890abcdef1234567890abcdef failed",
        ("sk-1234567890abcdef1234567890abcdef",),
    ),
    Secret("key_value", "api_key=sk-secret123", ("sk-secret123",)),
    Secret("key_value", "token=tk_9f8e7d6c5b4a", ("tk_9f8e7d6c5b4a",)),
    Secret("key_value", "secret: hunter2hunter2", ("hunter2hunter2",)),
    Secret("key_value", "api-key: Zm9vYmFyYmF6cXV4", ("Zm9vYmFyYmF6cXV4",)),
    Secret(
        "key_value", "password = 'correct horse battery staple'", ("correct horse battery staple",)
    ),
    Secret("key_value", '{"password": "p@55w0rd!Q"}', ("p@55w0rd!Q",)),
    Secret(
        "cookie",
        "Cookie: sessionid=8f14e45fceea167a5a36; csrftoken=Xy7Qw2Er",
        ("sessionid=8f14e45fceea167a5a36", "csrftoken=Xy7Qw2Er"),
    ),
    Secret(
        "cookie", "Set-Cookie: auth=eyJraWQiOiJrMSJ9; Path=/; HttpOnly", ("auth=eyJraWQiOiJrMSJ9",)
    ),
    Secret(
        "bearer",
        "curl -H 'Authorization: Bearer ya29.a0AfH6SMBx-Q9t7' https://api",
        ("ya29.a0AfH6SMBx-Q9t7",),
    ),
    Secret("bearer", "bearer 9f8e7d6c5b4a39281706", ("9f8e7d6c5b4a39281706",)),
    Secret(
        "openai",
        "OPENAI_API_KEY=sk-proj-AbCdEf0123456789_GhIjKl-MnOpQr",
        ("sk-proj-AbCdEf0123456789_GhIjKl-MnOpQr",),
    ),
    Secret(
        "anthropic",
        "anthropic.AuthenticationError: invalid x-api-key sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4",
        ("sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4",),
    ),
    Secret("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE", ("AKIAIOSFODNN7EXAMPLE",)),
    Secret(
        "aws_secret",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",),
    ),
    Secret(
        "google",
        "GOOGLE_API_KEY: AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
        ("AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",),
    ),
    Secret(
        "github",
        "git clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/aura/studio.git",
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a",),
    ),
    Secret(
        "slack",
        "SLACK_BOT_TOKEN=xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
        ("xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",),
    ),
    Secret(
        "stripe",
        "stripe.error.AuthenticationError: Invalid API Key provided: sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc",),
    ),
    Secret("stripe", "rk_live_51H8uZ2eZvKYlo2C0mQ1x9Z8", ("rk_live_51H8uZ2eZvKYlo2C0mQ1x9Z8",)),
    Secret(
        "jwt",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        (
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
        ),
    ),
    Secret("url_credentials", "redis://:S3cr3tPassw0rd@cache:6379/0", ("S3cr3tPassw0rd",)),
    Secret("url_credentials", "amqp://guest:g7Hq2LmX9pRt@rabbit.internal/vhost", ("g7Hq2LmX9pRt",)),
    Secret("query", "GET /render?job=42&access_token=Ab12Cd34Ef56Gh78", ("Ab12Cd34Ef56Gh78",)),
    Secret(
        "query",
        "https://store.blob.core.windows.net/c/v.mp4?sv=2022-11-02&sr=b&sig=pXm4%2BkLq9Zr7wQ%3D",
        ("pXm4%2BkLq9Zr7wQ%3D",),
    ),
    Secret("long_hex", "d41d8cd98f00b204e9800998ecf8427e", ("d41d8cd98f00b204e9800998ecf8427e",)),
    Secret(
        "long_hex",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",),
    ),
    Secret(
        "email",
        "Contact the producer at Jane.Doe+renders@aura-studio.example.org today",
        ("Jane.Doe+renders@aura-studio.example.org",),
    ),
    Secret("card", "card 4111 1111 1111 1111 declined", ("4111 1111 1111 1111",)),
    Secret("card", "5500-0000-0000-0004", ("5500-0000-0000-0004",)),
    Secret("card", "378282246310005", ("378282246310005",)),
    Secret("phone", "call me on +1 (415) 555-2671.", ("+1 (415) 555-2671",)),
    Secret("phone", "+44 20 7946 0958", ("+44 20 7946 0958",)),
    Secret("phone", "WhatsApp +4915112345678", ("+4915112345678",)),
    Secret(
        "key_value",
        "Server=tcp:db,1433;User ID=sa;Password=P4ssw0rd!x9;Encrypt=true",
        ("P4ssw0rd!x9",),
    ),
    Secret(
        "url_credentials",
        "mongodb+srv://admin:Zx9Qw8Er7Ty6@cluster0.mongodb.net/db",
        ("Zx9Qw8Er7Ty6",),
    ),
    Secret(
        "key_value", "aura-cli render --api-key=abc123def456ghi --verbose", ("abc123def456ghi",)
    ),
    Secret("key_value", "{'api_key': 'py9repr8value7', 'model': 'gpt-4'}", ("py9repr8value7",)),
    Secret("key_value", 'client = OpenAI(api_key="k3y-in-c0de-9988")', ("k3y-in-c0de-9988",)),
    Secret(
        "key_value",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4cXV1eA==;EndpointSuffix=core.windows.net",
        ("Zm9vYmFyYmF6cXV4cXV1eA==",),
    ),
    Secret("key_value", "x-goog-api-key: goog7key6value5", ("goog7key6value5",)),
    Secret("key_value", "ELEVENLABS_API_KEY=el_4f3e2d1c0b9a8f7e6d5c", ("el_4f3e2d1c0b9a8f7e6d5c",)),
    Secret("bearer", "Authorization: Token 9f8e7d6c5b4a3928", ("9f8e7d6c5b4a3928",)),
    Secret("cookie", "set-cookie: __Secure-session=Qm9vbXNlc3Npb24; Secure", ("Qm9vbXNlc3Npb24",)),
    Secret(
        "pem",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----",
        ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",),
    ),
]


def secrets() -> list[Secret]:
    items = _generated(random.Random(_RNG_SEED)) + HAND_WRITTEN
    for item in items:
        for needle in item.needles:
            assert needle in item.text, (item, needle)
            assert not any(ch in needle for ch in '"\\\n'), needle
    return items


#: Things that look a little like secrets but are not: they must survive untouched.
BENIGN: list[str] = [
    # job ids, UUIDs, correlation ids
    "job-2024-11-24-0001",
    "job_7f3a9c",
    "render-job-000123",
    "a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b",
    "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b",
    "550e8400-e29b-41d4-a716-446655440000",
    "corr-9b2e7c",
    "project-aurora-42",
    # trace ids in their usual textual forms
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    "traceId: 0af7651916cd43dd8448eb211c80319c",
    "span_id=00f067aa0ba902b7",
    "see trace 0af7651916cd43dd in Jaeger",
    # model names and providers
    "gpt-4o-2024-08-06",
    "gpt-4o-mini",
    "claude-3-5-sonnet-20241022",
    "claude-sonnet-4-5",
    "gemini-1.5-pro-002",
    "eleven_multilingual_v2",
    "stable-diffusion-xl-base-1.0",
    "dall-e-3",
    "text-embedding-3-large",
    "whisper-1",
    "tts-1-hd",
    "runway-gen3-alpha-turbo",
    "OpenAI",
    "ElevenLabs",
    "Anthropic",
    "task-oriented-dialogue-model",
    # file paths and URLs without credentials
    "/var/lib/aura/jobs/job-2024-11-24-0001/scene_04/keyframe_0001.png",
    "C:\\Users\\editor\\Videos\\final_cut_v3.mp4",
    "s3://aura-renders/2024/11/24/final.mp4",
    "https://example.com/docs/getting-started?page=2&sort=asc",
    "https://cdn.example.com/v1/clip.mp4?width=1920",
    "./output/voiceover/scene-12.wav",
    "assets/fonts/Inter-Bold.ttf",
    # resolutions, sizes, numbers, times
    "1920x1080",
    "3840x2160",
    "1024x1792",
    "24 fps",
    "48000 Hz",
    "-14 LUFS",
    "+3 dB",
    "+12.5%",
    "2024-11-24T23:58:03.123456Z",
    "2024-11-24 23:58:03",
    "1732492800123",
    "1732492800123456789",
    "duration 00:04:12.480",
    "v1.2.3-rc.1",
    "192.168.1.10:8080",
    "port 4318",
    "1 2 3 4 5 6 7 8 9 10 11 12 13",
    "$0.0025 per 1K tokens",
    "ISBN 978-0-306-40615-7",
    "order 1234 5678 9012",
    # key-ish words that are not credentials
    "max_tokens=4096",
    "keyframe_count=12",
    "monkey: 3",
    "author: Jane",
    "design: minimal",
    "token budget exhausted after 812 input tokens",
    "primary key constraint failed",
    "The keynote speaker discussed tokenization.",
    "Basic understanding of pacing is enough.",
    "The bearer of this letter is trusted.",
    "secret ingredient: patience",
    "private beta",
    "password reset e-mail was sent",
    "api_key_present=true",
    # ordinary prose
    "The narrator pauses for two beats before the reveal in scene 4.",
    "Colour grading uses a warm LUT; shadows lifted slightly.",
    "Retrying the TTS request after a 429 from the provider (attempt 2 of 3).",
    "Fallback selected because the pinned model was unavailable in eu-west-1.",
    "Voice-over timing drifted by 120 ms; re-aligned with the subtitles.",
    "Plan: intro (10s), three acts (40s each), outro (15s).",
    "User asked for a calm, documentary tone with archival footage.",
    "Scene 7 renders 240 frames at 24 fps, total 10 seconds.",
    "Contact support through the in-app chat.",
    "Budget: 3.50 USD per video.",
    # asset names and paths that look like e-mail addresses (name@2x.ext is a scale suffix)
    "thumbnail@2x.png",
    "icon@3x.webp",
    "logo@1.5x.svg",
    "sprite@2x.jpg",
    "https://cdn.example.com/assets/hero@2x.avif",
    "/srv/aura/assets/scene_04@2x.png",
    "npm install @aura/player@1.4.2",
    # versions, builds, short commit ids (under 32 hex digits)
    "v2.14.3",
    "opentelemetry-sdk 1.45.1",
    "build 20241128.1",
    "commit 3f2a9c1",
    "git 3f2a9c1d7e8b",
    "CUDA 12.4 / cuDNN 9.1",
    "python 3.11.7",
    # model names and provider ids that are not secrets
    "gpt-image-1",
    "whisper-large-v3",
    "claude-3-haiku-20240307",
    "eleven_turbo_v2_5",
    "voice 21m00Tcm4TlvDq8ikWAM",
    "chatcmpl-9xYzAbC123dEf456GhI789",
    "msg_01XFDUDYJgAACzvnptvVoYEL",
    "req_011CKpVhJqbZ3sQ",
    "cus_NffrFeUfNV2Hib",
    "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    "video id dQw4w9WgXcQ",
    # prices, quantities, numbers, dates and times that resemble phones, cards or SSNs
    "\u20ac12.50 per minute",
    "0.0000125 USD per character",
    "1,234,567 tokens",
    "frames 000123-000456",
    "timecode 00:01:23.456",
    "2024-11-28",
    "28.11.2024",
    "11/28/2024 04:25 PM",
    "1732768000",
    "rendered in 415 ms",
    "bitrate 8000 kbps",
    "ISO 8601",
    "HTTP 429",
    "h264 yuv420p 48000Hz",
    "chapter 3, pages 120-145",
    "resolution 1280 720 30",
    "sizes 100 200 3000",
    # key-like words that are not credentials
    "pinned_model: gpt-4o",
    "auth_method: oauth2",
    "pin_count=3",
    "keynote.pdf",
    "passport_country: FR",
    "token_count: 812",
    "compass heading 270",
    "bypass_cache=true",
    "ffmpeg -i in.mp4 -c:v libx264 -preset slow -crf 18 out.mp4",
    "python -u render.py --scene 4",
    "the key frame is at 00:00:04",
    "docs/tokenizer.md",
    "docker run -u 1000:1000 aura/render",
]
