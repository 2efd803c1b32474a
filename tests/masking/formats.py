"""One generated positive example per reference rule: gitleaks' default rule set (every rule id
of its ``config/gitleaks.toml``), detect-secrets' plugins, and the shapes issue 11 names
(command lines, env assignments, webhook URLs, signature parameters, PEM bodies).

The formats are public facts; the examples are generated here from a fixed seed (no real
credential, no copied test data). Each entry is ``rule -> (text, secret)``: ``text`` is how the
secret appears in telemetry, ``secret`` the part that must not survive masking.
"""

from __future__ import annotations

import random
import string

_rng = random.Random(20261128)
ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "_-"


def r(alphabet: str, n: int) -> str:
    """``n`` random characters; at least one digit and one letter of each case when the
    alphabet has them (a real token's look, and what random-looking checks expect)."""
    while True:
        out = "".join(_rng.choice(alphabet) for _ in range(n))
        classes = [
            c
            for c in (string.digits, string.ascii_lowercase, string.ascii_uppercase)
            if set(c) & set(alphabet)
        ]
        if n < 6 or all(set(out) & set(c) for c in classes):
            return out


def uuid() -> str:
    return f"{r(HEX, 8)}-{r(HEX, 4)}-4{r(HEX, 3)}-a{r(HEX, 3)}-{r(HEX, 12)}"


def _token(rule: str, secret: str) -> tuple[str, str]:
    """The token alone in prose: no key next to it, so its own format must be recognised."""
    del rule
    return f"the provider refused {secret} (retrying)", secret


def _context(key: str, value: str, style: int) -> tuple[str, str]:
    """A vendor credential next to its name, the way gitleaks' context rules find them."""
    forms = [
        f'{key.upper()}="{value}"',
        f"{key.lower()}: {value}",
        f'"{key}": "{value}"',
        f"export {key.upper()}={value}",
    ]
    return forms[style % len(forms)], value


# -- gitleaks: rules recognisable by prefix or shape -------------------------------------------
_PREFIXED: dict[str, str] = {
    "1password-secret-key": f"A3-{r(UPPER_ALNUM, 6)}-{r(UPPER_ALNUM, 11)}-{r(UPPER_ALNUM, 5)}-{r(UPPER_ALNUM, 5)}-{r(UPPER_ALNUM, 5)}",
    "1password-service-account-token": "ops_eyJ" + r(B64, 260),
    "adobe-client-secret": "p8e-" + r(ALNUM, 32),
    "age-secret-key": "AGE-SECRET-KEY-1"
    + "".join(_rng.choice("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L") for _ in range(58)),
    "airtable-personnal-access-token": "pat" + r(ALNUM, 14) + "." + r(HEX, 64),
    "alibaba-access-key-id": "LTAI" + r(ALNUM, 20),
    "anthropic-admin-api-key": "sk-ant-admin01-" + r(B64URL, 93) + "AA",
    "anthropic-api-key": "sk-ant-api03-" + r(B64URL, 93) + "AA",
    "artifactory-api-key": "AKCp" + r(ALNUM, 69),
    "artifactory-reference-token": "cmVmd" + r(ALNUM, 59),
    "authress-service-client-access-key": f"sc_{r(LOWER_ALNUM, 10)}.{r(LOWER_ALNUM, 5)}.acc_{r(LOWER_ALNUM, 20)}.{r(B64URL, 60)}",
    "aws-access-token": "AKIA" + r("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
    "aws-amazon-bedrock-api-key-long-lived": "ABSK" + r(B64, 120),
    "aws-amazon-bedrock-api-key-short-lived": "bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t"
    + r(B64, 40),
    "azure-ad-client-secret": f"{r(ALNUM, 3)}8Q~{r(ALNUM, 34)}",
    "clickhouse-cloud-api-secret-key": "4b1d" + r(ALNUM, 38),
    "clojars-api-token": "CLOJARS_" + r(LOWER_ALNUM, 60),
    "cloudflare-origin-ca-key": f"v1.0-{r(HEX, 24)}-{r(HEX, 146)}",
    "databricks-api-token": "dapi" + r(HEX, 32),
    "digitalocean-access-token": "doo_v1_" + r(HEX, 64),
    "digitalocean-pat": "dop_v1_" + r(HEX, 64),
    "digitalocean-refresh-token": "dor_v1_" + r(HEX, 64),
    "doppler-api-token": "dp.pt." + r(ALNUM, 43),
    "duffel-api-token": "duffel_live_" + r(B64URL, 43),
    "dynatrace-api-token": f"dt0c01.{r(UPPER_ALNUM, 24)}.{r(UPPER_ALNUM, 64)}",
    "easypost-api-token": "EZAK" + r(ALNUM, 54),
    "easypost-test-api-token": "EZTK" + r(ALNUM, 54),
    "facebook-access-token": f"{r(string.digits, 15)}|{r(B64URL, 32)}",
    "facebook-page-access-token": "EAAM" + r(ALNUM, 120),
    "flutterwave-encryption-key": "FLWSECK_TEST-" + r("abcdefgh0123456789", 12),
    "flutterwave-public-key": "FLWPUBK_TEST-" + r("abcdefgh0123456789", 32) + "-X",
    "flutterwave-secret-key": "FLWSECK_TEST-" + r("abcdefgh0123456789", 32) + "-X",
    "flyio-access-token": "fo1_" + r(B64URL, 43),
    "frameio-api-token": "fio-u-" + r(B64URL, 64),
    "freemius-secret-key": "sk_" + r(ALNUM, 29),
    "gcp-api-key": "AIza" + r(B64URL, 35),
    "github-app-token": "ghs_" + r(ALNUM, 36),
    "github-fine-grained-pat": "github_pat_" + r(ALNUM + "_", 82),
    "github-oauth": "gho_" + r(ALNUM, 36),
    "github-pat": "ghp_" + r(ALNUM, 36),
    "github-refresh-token": "ghr_" + r(ALNUM, 36),
    "gitlab-cicd-job-token": "glcbt-" + r(ALNUM, 4) + "_" + r(B64URL, 20),
    "gitlab-deploy-token": "gldt-" + r(B64URL, 20),
    "gitlab-feature-flag-client-token": "glffct-" + r(B64URL, 20),
    "gitlab-feed-token": "glft-" + r(B64URL, 20),
    "gitlab-incoming-mail-token": "glimt-" + r(B64URL, 25),
    "gitlab-kubernetes-agent-token": "glagent-" + r(B64URL, 50),
    "gitlab-oauth-app-secret": "gloas-" + r(B64URL, 64),
    "gitlab-pat": "glpat-" + r(B64URL, 20),
    "gitlab-pat-routable": "glpat-" + r(B64URL, 27) + "." + r(LOWER_ALNUM, 9),
    "gitlab-ptt": "glptt-" + r(HEX, 40),
    "gitlab-rrt": "GR1348941" + r(B64URL, 20),
    "gitlab-runner-authentication-token": "glrt-" + r(B64URL, 20),
    "gitlab-runner-authentication-token-routable": "glrt-t1_"
    + r(B64URL, 27)
    + "."
    + r(LOWER_ALNUM, 9),
    "gitlab-scim-token": "glsoat-" + r(B64URL, 20),
    "gitlab-session-cookie": "_gitlab_session=" + r(LOWER_ALNUM, 32),
    "grafana-api-key": "eyJrIjoi" + r(ALNUM, 80),
    "grafana-cloud-api-token": "glc_" + r(ALNUM, 40),
    "grafana-service-account-token": f"glsa_{r(ALNUM, 32)}_{r(HEX, 8)}",
    "harness-api-key": f"pat.{r(B64URL, 22)}.{r(ALNUM, 24)}.{r(ALNUM, 20)}",
    "hashicorp-tf-api-token": f"{r(LOWER_ALNUM, 14)}.atlasv1.{r(B64URL, 64)}",
    "heroku-api-key-v2": "HRKU-AA" + r(B64URL, 58),
    "huggingface-access-token": "hf_" + r(string.ascii_letters, 34),
    "huggingface-organization-api-token": "api_org_" + r(string.ascii_letters, 34),
    "infracost-api-token": "ico-" + r(ALNUM, 32),
    "intra42-client-secret": "s-s4t2ud-" + r(HEX, 64),
    "jwt": f"eyJ{r(ALNUM, 30)}.eyJ{r(ALNUM, 40)}.{r(B64URL, 43)}",
    "jwt-base64": "ZXlKaGJHY2lPaU" + r(B64, 60),
    "linear-api-key": "lin_api_" + r(ALNUM, 40),
    "maxmind-license-key": f"{r(ALNUM, 6)}_{r(ALNUM, 29)}_mmk",
    "notion-api-token": "ntn_" + r(string.digits, 11) + r(ALNUM, 35),
    "npm-access-token": "npm_" + r(ALNUM, 36),
    "octopus-deploy-api-key": "API-" + r(UPPER_ALNUM, 26),
    "openai-api-key": "sk-proj-" + r(B64URL, 58) + "T3BlbkFJ" + r(B64URL, 58),
    "openshift-user-token": "sha256~" + r(B64URL, 43),
    "perplexity-api-key": "pplx-" + r(ALNUM, 48),
    "planetscale-api-token": "pscale_tkn_" + r(B64URL, 43),
    "planetscale-oauth-token": "pscale_oauth_" + r(B64URL, 43),
    "planetscale-password": "pscale_pw_" + r(B64URL, 43),
    "postman-api-token": f"PMAK-{r(HEX, 24)}-{r(HEX, 34)}",
    "prefect-api-token": "pnu_" + r(ALNUM, 36),
    "private-key": "-----BEGIN PRIVATE KEY-----\n"
    + r(B64, 64)
    + "\n"
    + r(B64, 40)
    + "\n-----END PRIVATE KEY-----",
    "pulumi-api-token": "pul-" + r(HEX, 40),
    "pypi-upload-token": "pypi-AgEIcHlwaS5vcmc" + r(B64URL, 80),
    "readme-api-token": "rdme_" + r(LOWER_ALNUM, 70),
    "rubygems-api-token": "rubygems_" + r(HEX, 48),
    "scalingo-api-token": "tk-us-" + r(B64URL, 48),
    "sendgrid-api-token": f"SG.{r(B64URL, 22)}.{r(B64URL, 43)}",
    "sendinblue-api-token": f"xkeysib-{r(HEX, 64)}-{r(ALNUM, 16)}",
    "sentry-org-token": "sntrys_eyJpYXQiO"
    + r(ALNUM, 40)
    + "LCJyZWdpb25fdXJs"
    + r(ALNUM, 40)
    + "_"
    + r(ALNUM, 43),
    "sentry-user-token": "sntryu_" + r(HEX, 64),
    "settlemint-application-access-token": "sm_aat_" + r(ALNUM, 16),
    "settlemint-personal-access-token": "sm_pat_" + r(ALNUM, 16),
    "settlemint-service-access-token": "sm_sat_" + r(ALNUM, 16),
    "shippo-api-token": "shippo_live_" + r(HEX, 40),
    "shopify-access-token": "shpat_" + r(HEX, 32),
    "shopify-custom-access-token": "shpca_" + r(HEX, 32),
    "shopify-private-app-access-token": "shppa_" + r(HEX, 32),
    "shopify-shared-secret": "shpss_" + r(HEX, 32),
    "sidekiq-sensitive-url": f"https://{r(HEX, 8)}:{r(HEX, 8)}@gems.contribsys.com/",
    "slack-app-token": f"xapp-1-A{r(UPPER_ALNUM, 10)}-{r(string.digits, 13)}-{r(LOWER_ALNUM, 64)}",
    "slack-bot-token": f"xoxb-{r(string.digits, 12)}-{r(string.digits, 13)}-{r(ALNUM, 24)}",
    "slack-config-access-token": "xoxe.xoxp-1-" + r(UPPER_ALNUM, 163),
    "slack-config-refresh-token": "xoxe-1-" + r(UPPER_ALNUM, 146),
    "slack-legacy-bot-token": f"xoxb-{r(string.digits, 10)}-{r(ALNUM, 24)}",
    "slack-legacy-token": f"xoxs-{r(string.digits, 10)}-{r(string.digits, 11)}-{r(string.digits, 12)}-{r(HEX, 20)}",
    "slack-legacy-workspace-token": "xoxa-2-" + r(ALNUM, 40),
    "slack-user-token": f"xoxp-{r(string.digits, 12)}-{r(string.digits, 12)}-{r(string.digits, 12)}-{r(ALNUM, 32)}",
    "slack-webhook-url": "https://hooks.slack.com/services/T"
    + r(UPPER_ALNUM, 8)
    + "/B"
    + r(UPPER_ALNUM, 8)
    + "/"
    + r(ALNUM, 24),
    "sourcegraph-access-token": "sgp_" + r(HEX, 16) + "_" + r(HEX, 40),
    "square-access-token": "EAAA" + r(B64URL, 60),
    "stripe-access-token": "sk_live_" + r(ALNUM, 48),
    "twilio-api-key": "SK" + r(HEX, 32),
    "vault-batch-token": "hvb." + r(B64URL, 150),
    "vault-service-token": "hvs." + r(B64URL, 95),
    "microsoft-teams-webhook": f"https://acme.webhook.office.com/webhookb2/{uuid()}@{uuid()}/IncomingWebhook/{r(ALNUM, 32)}/{uuid()}",
    "curl-auth-header": f'curl -H "Authorization: Basic {r(B64, 24)}=" https://api.example.com',
    "curl-auth-user": f"curl -u deploy:{r(ALNUM, 16)} https://api.example.com",
    "kubernetes-secret-yaml": f"kind: Secret\ndata:\n  db-password: {r(B64, 24)}=",
    "nuget-config-password": f'<add key="ClearTextPassword" value="{r(ALNUM, 16)}" />',
    "hashicorp-tf-password": f'administrator_login_password = "{r(ALNUM, 20)}"',
    "generic-api-key": f"client_secret = {r(ALNUM, 32)}",
    "sidekiq-secret": f"BUNDLE_ENTERPRISE__CONTRIBSYS__COM={r(HEX, 8)}:{r(HEX, 8)}",
    "pkcs12-file": "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
    + r(B64, 64)
    + "\n-----END ENCRYPTED PRIVATE KEY-----",
}

# -- gitleaks: context rules (a vendor's name next to the credential) --------------------------
_CONTEXT_VALUES: dict[str, str] = {
    "adafruit-api-key": r(LOWER_ALNUM, 32),
    "adobe-client-id": r(HEX, 32),
    "airtable-api-key": r(LOWER_ALNUM, 17),
    "algolia-api-key": r(LOWER_ALNUM, 32),
    "alibaba-secret-key": r(LOWER_ALNUM, 30),
    "asana-client-id": r(string.digits, 16),
    "asana-client-secret": r(LOWER_ALNUM, 32),
    "atlassian-api-token": "ATATT3xFfGF0" + r(B64URL, 180),
    "beamer-api-token": "b_" + r(B64URL, 44),
    "bitbucket-client-id": r(LOWER_ALNUM, 32),
    "bitbucket-client-secret": r(B64URL, 64),
    "bittrex-access-key": r(LOWER_ALNUM, 32),
    "bittrex-secret-key": r(LOWER_ALNUM, 32),
    "cisco-meraki-api-key": r(HEX, 40),
    "cloudflare-api-key": r(B64URL, 40),
    "cloudflare-global-api-key": r(HEX, 37),
    "codecov-access-token": r(LOWER_ALNUM, 32),
    "cohere-api-token": r(ALNUM, 40),
    "coinbase-access-token": r(B64URL, 64),
    "confluent-access-token": r(LOWER_ALNUM, 16),
    "confluent-secret-key": r(LOWER_ALNUM, 64),
    "contentful-delivery-api-token": r(B64URL, 43),
    "datadog-access-token": r(LOWER_ALNUM, 40),
    "defined-networking-api-token": f"dnkey-{r(B64URL, 26)}-{r(B64URL, 52)}",
    "discord-api-token": r(HEX, 64),
    "discord-client-id": r(string.digits, 18),
    "discord-client-secret": r(B64URL, 32),
    "droneci-access-token": r(LOWER_ALNUM, 32),
    "dropbox-api-token": r(LOWER_ALNUM, 15),
    "dropbox-long-lived-api-token": r(LOWER_ALNUM, 11) + "AAAAAAAAAA" + r(B64URL, 43),
    "dropbox-short-lived-api-token": "sl." + r(B64URL, 135),
    "etsy-access-token": r(LOWER_ALNUM, 24),
    "facebook-secret": r(HEX, 32),
    "fastly-api-token": r(B64URL, 32),
    "finicity-api-token": r(HEX, 32),
    "finicity-client-secret": r(LOWER_ALNUM, 20),
    "finnhub-access-token": r(LOWER_ALNUM, 20),
    "flickr-access-token": r(LOWER_ALNUM, 32),
    "freshbooks-access-token": r(LOWER_ALNUM, 64),
    "gitter-access-token": r(B64URL, 40),
    "gocardless-api-token": "live_" + r(B64URL, 40),
    "heroku-api-key": uuid(),
    "hubspot-api-key": uuid().upper(),
    "intercom-api-key": r(B64URL, 60),
    "jfrog-api-key": r(LOWER_ALNUM, 73),
    "jfrog-identity-token": r(LOWER_ALNUM, 64),
    "kraken-access-token": r(B64 + "=_-", 86),
    "kucoin-access-token": r(HEX, 24),
    "kucoin-secret-key": uuid(),
    "launchdarkly-access-token": r(B64URL, 40),
    "linear-client-secret": r(HEX, 32),
    "linkedin-client-id": r(LOWER_ALNUM, 14),
    "linkedin-client-secret": r(LOWER_ALNUM, 16),
    "lob-api-key": "live_" + r(HEX, 35),
    "lob-pub-api-key": "test_pub_" + r(HEX, 31),
    "looker-client-id": r(LOWER_ALNUM, 20),
    "looker-client-secret": r(LOWER_ALNUM, 24),
    "mailchimp-api-key": r(HEX, 32) + "-us20",
    "mailgun-private-api-token": "key-" + r(HEX, 32),
    "mailgun-pub-key": "pubkey-" + r(HEX, 32),
    "mailgun-signing-key": f"{r(HEX, 32)}-{r(HEX, 8)}-{r(HEX, 8)}",
    "mapbox-api-token": f"pk.{r(LOWER_ALNUM, 60)}.{r(LOWER_ALNUM, 22)}",
    "mattermost-access-token": r(LOWER_ALNUM, 26),
    "messagebird-api-token": r(LOWER_ALNUM, 25),
    "messagebird-client-id": uuid(),
    "netlify-access-token": r(B64URL, 43),
    "new-relic-browser-api-token": "NRJS-" + r(HEX, 19),
    "new-relic-insert-key": "NRII-" + r(B64URL, 32),
    "new-relic-user-api-id": r(LOWER_ALNUM, 64),
    "new-relic-user-api-key": "NRAK-" + r(UPPER_ALNUM, 27),
    "nytimes-access-token": r(B64URL, 32),
    "okta-access-token": "00" + r(B64URL, 40),
    "plaid-api-token": f"access-production-{uuid()}",
    "plaid-client-id": r(LOWER_ALNUM, 24),
    "plaid-secret-key": r(LOWER_ALNUM, 30),
    "privateai-api-token": r(LOWER_ALNUM, 32),
    "rapidapi-access-token": r(B64URL, 50),
    "sendbird-access-id": uuid(),
    "sendbird-access-token": r(HEX, 40),
    "sentry-access-token": r(HEX, 64),
    "snyk-api-token": uuid(),
    "sonar-api-token": "squ_" + r(HEX, 40),
    "squarespace-access-token": uuid(),
    "sumologic-access-id": "su" + r(ALNUM, 12),
    "sumologic-access-token": r(ALNUM, 64),
    "telegram-bot-api-token": f"{r(string.digits, 10)}:A{r(B64URL, 34)}",
    "travisci-access-token": r(LOWER_ALNUM, 22),
    "twitch-api-token": r(LOWER_ALNUM, 30),
    "twitter-access-secret": r(LOWER_ALNUM, 45),
    "twitter-access-token": f"{r(string.digits, 19)}-{r(ALNUM, 30)}",
    "twitter-api-key": r(LOWER_ALNUM, 25),
    "twitter-api-secret": r(LOWER_ALNUM, 50),
    "twitter-bearer-token": "A" * 22 + r(ALNUM, 90),
    "typeform-api-token": "tfp_" + r(B64URL, 59),
    "yandex-access-token": f"t1.{r(B64URL, 20)}.{r(B64URL, 86)}",
    "yandex-api-key": "AQVN" + r(B64URL, 36),
    "yandex-aws-access-token": "YC" + r(B64URL, 38),
    "zendesk-secret-key": r(LOWER_ALNUM, 40),
}


def _context_key(rule: str) -> str:
    """The variable a person would name it: ``twitter-api-secret`` -> ``twitter_api_secret``."""
    return rule.replace("-", "_")


GITLEAKS: dict[str, tuple[str, str]] = {
    **{rule: _token(rule, secret) for rule, secret in _PREFIXED.items()},
    **{
        rule: _context(_context_key(rule), value, i)
        for i, (rule, value) in enumerate(_CONTEXT_VALUES.items())
    },
}
_SECRET_OF = {
    "curl-auth-header": lambda t: t.split("Basic ")[1].split('"')[0],
    "curl-auth-user": lambda t: t.split(":")[1].split(" ")[0],
    "kubernetes-secret-yaml": lambda t: t.rsplit(": ", 1)[1],
    "nuget-config-password": lambda t: t.split('value="')[1].split('"')[0],
    "hashicorp-tf-password": lambda t: t.split('"')[1],
    "generic-api-key": lambda t: t.split(" = ")[1],
    "sidekiq-secret": lambda t: t.split("=")[1],
    "sidekiq-sensitive-url": lambda t: t.split("//")[1].split("@")[0],
}
for _rule, _secret_of in _SECRET_OF.items():
    GITLEAKS[_rule] = (_PREFIXED[_rule], _secret_of(_PREFIXED[_rule]))

# -- detect-secrets plugins ----------------------------------------------------------------------
DETECT_SECRETS: dict[str, tuple[str, str]] = {
    "ArtifactoryDetector": _token("artifactory", "AKCp" + r(ALNUM, 69)),
    "AWSKeyDetector": _context("aws_secret_access_key", r(B64, 40), 0),
    "AzureStorageKeyDetector": _token("azure", "AccountKey=" + r(B64, 86) + "=="),
    "BasicAuthDetector": _token("url", f"https://admin:{r(ALNUM, 14)}@db.internal:5432/app"),
    "CloudantDetector": _context("cloudant_password", r(HEX, 64), 1),
    "DiscordBotTokenDetector": _token(
        "discord", f"M{r(B64URL, 23)}.{r(B64URL, 6)}.{r(B64URL, 27)}"
    ),
    "GitHubTokenDetector": _token("github", "ghp_" + r(ALNUM, 36)),
    "GitLabTokenDetector": _token("gitlab", "glpat-" + r(B64URL, 20)),
    "Base64HighEntropyString": _context("signing_secret", r(B64, 44) + "=", 2),
    "HexHighEntropyString": _context("hmac", r(HEX, 40), 3),
    "IbmCloudIamDetector": _context("ibm_cloud_iam_api_key", r(B64URL, 44), 0),
    "IbmCosHmacDetector": _context("ibm_cos_hmac_secret_access_key", r(HEX, 48), 1),
    "JwtTokenDetector": _token("jwt", f"eyJ{r(ALNUM, 20)}.eyJ{r(ALNUM, 30)}.{r(B64URL, 43)}"),
    "KeywordDetector": _context("db_password", r(ALNUM, 12), 2),
    "MailchimpDetector": _token("mailchimp", r(HEX, 32) + "-us6"),
    "NpmDetector": _token("npmrc", "//registry.npmjs.org/:_authToken=npm_" + r(ALNUM, 36)),
    "OpenAIDetector": _token("openai", "sk-" + r(ALNUM, 20) + "T3BlbkFJ" + r(ALNUM, 20)),
    "PrivateKeyDetector": _token(
        "pem", "-----BEGIN RSA PRIVATE KEY-----\n" + r(B64, 64) + "\n-----END RSA PRIVATE KEY-----"
    ),
    "PypiTokenDetector": _token("pypi", "pypi-AgENdGVzdC5weXBpLm9yZw" + r(B64URL, 80)),
    "SendGridDetector": _token("sendgrid", f"SG.{r(B64URL, 22)}.{r(B64URL, 43)}"),
    "SlackDetector": _token(
        "slack",
        "https://hooks.slack.com/services/T"
        + r(UPPER_ALNUM, 10)
        + "/B"
        + r(UPPER_ALNUM, 10)
        + "/"
        + r(ALNUM, 24),
    ),
    "SoftlayerDetector": _token("softlayer", "https://api.softlayer.com/soap/v3/" + r(HEX, 64)),
    "SquareOAuthDetector": _token("square", "sq0csp-" + r(B64URL, 43)),
    "StripeDetector": _token("stripe", "rk_live_" + r(ALNUM, 24)),
    "TelegramBotTokenDetector": _token("telegram", f"{r(string.digits, 10)}:A{r(B64URL, 34)}"),
    "TwilioKeyDetector": _token("twilio", "AC" + r(HEX, 32)),
}

# -- the shapes issue 11 names -------------------------------------------------------------------
_PW = r(ALNUM, 14)
ISSUE_11: dict[str, tuple[str, str]] = {
    "google-oauth-client-secret": _token("google", "GOCSPX-" + r(B64URL, 28)),
    "google-oauth-refresh-token": _token("google", "1//0" + r(B64URL, 100)),
    "slack-refresh-token": _token("slack", "xoxe-1-" + r(UPPER_ALNUM, 146)),
    "discord-webhook": _token(
        "discord", f"https://discord.com/api/webhooks/{r(string.digits, 18)}/{r(B64URL, 68)}"
    ),
    "telegram-bot-url": (
        f"GET https://api.telegram.org/bot{(tg := r(string.digits, 10) + ':A' + r(B64URL, 34))}/sendMessage",
        tg,
    ),
    "elevenlabs-key": _token("elevenlabs", "sk_" + r(HEX, 48)),
    "docker-hub-pat": _token("docker", "dckr_pat_" + r(B64URL, 27)),
    "huggingface-token": _token("hf", "hf_" + r(string.ascii_letters, 34)),
    "vault-token": _token("vault", "hvs." + r(B64URL, 95)),
    "age-key": _token(
        "age",
        "AGE-SECRET-KEY-1"
        + "".join(_rng.choice("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L") for _ in range(58)),
    ),
    "twilio-account-sid": _token("twilio", "AC" + r(HEX, 32)),
    "mailgun-key": _token("mailgun", "key-" + r(HEX, 32)),
    "ifttt-webhook": _token(
        "ifttt", f"https://maker.ifttt.com/trigger/render_done/with/key/{r(B64URL, 22)}"
    ),
    "curl-user-long-flag": (f"curl --user ops:{_PW} https://x", _PW),
    "mysql-p": (f"mysql -h db -u root -p{(pw := r(ALNUM, 12))} app", pw),
    "mysqldump-password": (f"mysqldump --password={(pw2 := r(ALNUM, 12))} app", pw2),
    "aws-configure-set": (f"aws configure set aws_secret_access_key {(aws := r(B64, 40))}", aws),
    "cli-password-flag": (f"pg_dump --password {(pw3 := r(ALNUM, 12))} -h db", pw3),
    "env-pgpassword": (f"PGPASSWORD={(pw4 := r(ALNUM, 12))} psql -h db", pw4),
    "env-smtp-pass": (f"SMTP_PASS={(pw5 := r(ALNUM, 12))}", pw5),
    "env-db-pwd": (f"DB_PWD={(pw6 := r(ALNUM, 12))}", pw6),
    "env-mysql-pwd": (f"export MYSQL_PWD='{(pw7 := r(ALNUM, 12))}'", pw7),
    "query-sig": (
        f"https://acct.blob.core.windows.net/c/b.mp4?sv=2024-01-01&sig={(sig := r(B64, 43))}%3D",
        sig,
    ),
    "query-signature": (
        f"https://cdn.example.com/v.mp4?Expires=1700000000&Signature={(sig2 := r(B64URL, 60))}",
        sig2,
    ),
    "query-x-amz-signature": (
        f"https://s3.amazonaws.com/b/k?X-Amz-Credential=AKIA/x&X-Amz-Signature={(sig3 := r(HEX, 64))}",
        sig3,
    ),
    "query-code": (
        f"https://app.example.com/callback?code={(code := '4/0A' + r(B64URL, 40))}&state=xyz",
        code,
    ),
    "pem-body-without-begin": (
        (body := "\n".join(r(B64, 64) for _ in range(4))) + "\n-----END PRIVATE KEY-----",
        body.splitlines()[1],
    ),
    "pem-der-first-line": (
        f"key material: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{r(B64, 60)}",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    ),
    "entropy-after-credential-word": (f"the token is {(ent := r(ALNUM, 32))}", ent),
}

# -- aura-otel's own rules whose reference examples above sit behind a key (the key-value rule
# masks them first): each also alone in prose, so that every rule of the table fires.
OWN_RULES: dict[str, tuple[str, str]] = {
    "atlassian": _token("atlassian", "ATATT3xFfGF0" + r(B64URL, 180)),
    "azure_storage_account_key": _token("azure", "AccountKey=" + r(B64, 86) + "=="),
    "defined_networking": _token("dnkey", f"dnkey-{r(B64URL, 26)}-{r(B64URL, 52)}"),
    "google_oauth_access_token": _token("google", "ya29.a0" + r(B64URL, 60)),
    "new_relic": _token("new-relic", "NRAK-" + r(UPPER_ALNUM, 27)),
    "sonar": _token("sonar", "squ_" + r(HEX, 40)),
    "typeform": _token("typeform", "tfp_" + r(B64URL, 59)),
    "vault_legacy_token": _token("vault", "s." + r(ALNUM, 24)),
    "yandex": _token("yandex", "AQVN" + r(B64URL, 36)),
}

#: Every reference rule -> (text, secret). Names are prefixed by their source.
FORMATS: dict[str, tuple[str, str]] = {
    **{f"gitleaks:{k}": v for k, v in GITLEAKS.items()},
    **{f"detect-secrets:{k}": v for k, v in DETECT_SECRETS.items()},
    **{f"issue-11:{k}": v for k, v in ISSUE_11.items()},
    **{f"aura-otel:{k}": v for k, v in OWN_RULES.items()},
}
