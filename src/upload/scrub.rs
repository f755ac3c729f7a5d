//! Error text from an S3 endpoint, made fit to show. An S3-compatible store's error answer can
//! echo what the request carried: the access key id (`<AWSAccessKeyId>`), the session token
//! (`<Token-0>`, `X-Amz-Security-Token=…`), the signature and the canonical request it was
//! computed over. That text becomes the job's `error`, which is stored, shown, mailed and
//! logged, so every S3 error is scrubbed when it is made ([`Scrubber::error_text`]): by the
//! job's own secret values, whatever form the endpoint echoed them in, and by shape, for the
//! credentials we do not hold (the worker's own, from its AWS credential chain).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// What stands where a secret was.
pub const REDACTED: &str = "[redacted]";

/// The longest error message kept: an endpoint's answer is not ours to store whole.
const MAX_MESSAGE_CHARS: usize = 1_000;

/// Values shorter than this are only redacted as whole words: two or three letters occur by
/// chance in any message, and replacing them would garble it without protecting anything.
const SHORT_VALUE: usize = 8;

/// Shapes credentials take in S3 answers, each with what replaces it.
static SHAPES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let shape = |re: &str, with: &'static str| (Regex::new(re).expect("a valid pattern"), with);
    vec![
        // Query parameters, headers and the canonical request: `X-Amz-Security-Token=…`,
        // `x-amz-security-token:…`, `Credential=AKIA…/20260101/…`, `Signature=…`.
        shape(
            r"(?i)\b((?:x-amz-)?(?:security-token|credential|signature)|awsaccesskeyid)(\s*[=:]\s*)[^\s,&;'<>]+",
            "$1$2[redacted]",
        ),
        // XML elements that hold a credential or what was signed with it.
        shape(
            r"(?i)<(AWSAccessKeyId|AccessKeyId|SecretAccessKey|SessionToken|Token-\d+|SignatureProvided|StringToSign(?:Bytes)?|CanonicalRequest(?:Bytes)?|Credentials?)>[^<]*",
            "<$1>[redacted]",
        ),
        // The legacy `Authorization: AWS <key id>:<signature>`.
        shape(r"\bAWS [A-Za-z0-9]{16,}:[A-Za-z0-9/+=]+", "AWS [redacted]"),
        // Access key ids (long-term and temporary) and STS session tokens wherever they stand.
        shape(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{12,}\b", REDACTED),
        shape(r"(?:FwoGZXIvYXdz|IQoJb3JpZ2lu)[A-Za-z0-9/+=%]*", REDACTED),
    ]
});

/// Removes one job's secret values and anything shaped like a credential from error text.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// One alternation of every known value, as given and percent-encoded (a token echoed
    /// from a query string), longest first so that no part of a longer value survives.
    values: Option<Regex>,
    /// The values themselves, when they were too long for one pattern.
    plain: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrubber(***)")
    }
}

impl Scrubber {
    /// A scrubber for these secret values (access key, secret key, session token, zip
    /// password); empty ones are skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut forms: Vec<String> = secrets
            .into_iter()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .flat_map(|v| [v.to_string(), percent_encoding::utf8_percent_encode(v, ENCODED).to_string()])
            .collect();
        forms.sort_by_key(|v| std::cmp::Reverse(v.len()));
        forms.dedup();
        let alternatives: Vec<String> = forms.iter().map(|v| value_pattern(v)).collect();
        // Very long values (a megabyte-long key) make a pattern over the regex size limit:
        // those are then replaced one by one as plain text, never left in.
        let values = (!alternatives.is_empty()).then(|| Regex::new(&alternatives.join("|")).ok()).flatten();
        let plain = if values.is_none() { forms } else { Vec::new() };
        Self { values, plain }
    }

    /// `text` with every known secret value and every credential-shaped piece replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = match &self.values {
            Some(values) => values.replace_all(text, REDACTED).into_owned(),
            None => self.plain.iter().fold(text.to_string(), |t, v| t.replace(v.as_str(), REDACTED)),
        };
        for (shape, with) in SHAPES.iter() {
            if let std::borrow::Cow::Owned(replaced) = shape.replace_all(&text, *with) {
                text = replaced;
            }
        }
        text
    }

    /// An S3 error message as it may be stored and shown: scrubbed, then cut to a length a
    /// job's error can hold (cut after scrubbing, so that no secret is cut in half and missed).
    pub fn error_text(&self, message: &str) -> String {
        let scrubbed = self.scrub(message);
        match scrubbed.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((at, _)) => format!("{}…", &scrubbed[..at]),
            None => scrubbed,
        }
    }

    /// An S3 error code, if it looks like one (`AccessDenied`): a code is shown as it is, so
    /// anything else an endpoint put there is dropped.
    pub fn error_code(code: Option<&str>) -> Option<String> {
        code.filter(|c| !c.is_empty() && c.len() < 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
            .map(str::to_string)
    }
}

/// Percent-encoding as in a query string: everything but unreserved characters.
const ENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn value_pattern(value: &str) -> String {
    let escaped = regex::escape(value);
    if value.chars().count() >= SHORT_VALUE {
        return escaped;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let before = if word(value.chars().next()) { r"\b" } else { "" };
    let after = if word(value.chars().last()) { r"\b" } else { "" };
    format!("{before}{escaped}{after}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "FwoGZXIvYXdzEJr//////////wEaDHtoken+with/slashes==";

    #[test]
    fn values_too_long_for_one_pattern_are_still_removed() {
        let huge = "QZ".repeat(500_000);
        let s = Scrubber::new([huge.as_str(), "AKIAIOSFODNN7EXAMPLE"]);
        let out = s.scrub(&format!("echo {huge} and AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(out, "echo [redacted] and [redacted]");
    }

    #[test]
    fn known_values_are_removed_in_every_form_they_are_echoed_in() {
        let s = Scrubber::new(["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG", TOKEN, "", "zip-password-1"]);
        let encoded = percent_encoding::utf8_percent_encode(TOKEN, ENCODED).to_string();
        let text = format!(
            "key AKIAIOSFODNN7EXAMPLE, secret wJalrXUtnFEMI/K7MDENG, token {TOKEN}, in a URL ?t={encoded}&x=1, zip zip-password-1"
        );
        let out = s.scrub(&text);
        for secret in
            ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", TOKEN, &encoded, "zip-password-1", "token+with"]
        {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.starts_with("key [redacted], secret [redacted], token [redacted]"), "{out}");
    }

    #[test]
    fn credentials_we_do_not_hold_are_removed_by_their_shape() {
        let s = Scrubber::default();
        let body = "<Error><Code>InvalidToken</Code><Message>bad token</Message><Token-0>opaque-token-value</Token-0>\
                    <AWSAccessKeyId>LKIAQAAAAAAAEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n20260101T000000Z</StringToSign>\
                    <SignatureProvided>abc123def</SignatureProvided></Error>";
        let out = s.scrub(body);
        for secret in ["opaque-token-value", "LKIAQAAAAAAAEXAMPLE", "20260101T000000Z", "abc123def"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains(
                "<Code>InvalidToken</Code><Message>bad token</Message><Token-0>[redacted]</Token-0>"
            ),
            "{out}"
        );

        let url = "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=opaque%2Ftoken&X-Amz-Credential=LKIA1%2F2026&X-Amz-Signature=f00d";
        let out = s.scrub(url);
        assert!(
            out.ends_with(
                "?X-Amz-Security-Token=[redacted]&X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]"
            ),
            "{out}"
        );
        let header = "Authorization: AWS4-HMAC-SHA256 Credential=LKIA1/20260101/us-east-1/s3/aws4_request, \
                      SignedHeaders=host;x-amz-security-token, Signature=f00d; x-amz-security-token:opaque";
        let out = s.scrub(header);
        assert!(!out.contains("LKIA1") && !out.contains("f00d") && !out.contains(":opaque"), "{out}");
        assert!(out.contains("SignedHeaders=host;x-amz-security-token,"), "what is no secret stays: {out}");
        let out = s.scrub("the key ASIAY34FZKBOKMUTVV7A with FwoGZXIvYXdzEL3 and AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo=");
        assert_eq!(out, "the key [redacted] with [redacted] and AWS [redacted]");
    }

    #[test]
    fn ordinary_messages_stay_readable() {
        let s = Scrubber::new(["test", "p4ss"]);
        let message = "The request signature we calculated does not match the signature you provided. Check your key and signing method.";
        assert_eq!(s.scrub(message), message);
        assert_eq!(
            s.scrub("latest test: contest"),
            "latest [redacted]: contest",
            "short values only as whole words"
        );
        assert_eq!(Scrubber::error_code(Some("AccessDenied")).as_deref(), Some("AccessDenied"));
        assert_eq!(Scrubber::error_code(Some("Denied <Token-0>x</Token-0>")), None);
        let long = s.error_text(&"x".repeat(5_000));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
