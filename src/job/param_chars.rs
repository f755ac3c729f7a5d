//! Which characters a destination parameter may hold, by where it travels. The AWS keys and
//! session token go into signed HTTP headers (SigV4's `Authorization` and
//! `x-amz-security-token`), which carry visible ASCII only: a line break there panicked the
//! S3 signer on every run of the job. The prefix and the endpoint end up in URLs and object
//! keys, the zip password at a prompt. Each is refused at submission (206, or 211 for the
//! password) with what is wrong and where, never with the value, which may be a secret.

use serde_json::{Map, Value};

use super::refusal::{RequestError, codes};

/// Sent in a header as they are: visible ASCII, no spaces.
const HEADER_PARAMS: &[&str] = &[
    "aws.accesskey",
    "aws.secretkey",
    "aws.sessiontoken",
    "aws.kmskeyid",
    "azure.accesskey",
    "azure.sastoken",
];
/// Kept in an object key, a URL or a password: any text but control characters.
const TEXT_PARAMS: &[&str] = &[
    "aws.prefix",
    "aws.endpoint",
    "file.password",
    "file.directory",
    "azure.prefix",
    "azure.endpoint",
    "gcs.prefix",
    "gcs.endpoint",
];

/// Checks every string parameter that has a character rule. Values are judged as the parser
/// keeps them: trimmed, but for the password, which is kept as it is.
pub(super) fn check(params: &Map<String, Value>) -> Result<(), RequestError> {
    for (key, value) in params {
        let Value::String(raw) = value else { continue };
        if let Some(most) = longest(key).filter(|most| raw.len() > *most) {
            let code = if key == "file.password" { codes::PASSWORD_NEEDS_ZIP } else { codes::BAD_AWS_PARAM };
            return Err(RequestError {
                code,
                msg: format!(
                    "destination.params.{key} is {} bytes long, and at most {most} are accepted; check what was sent there",
                    raw.len()
                ),
            });
        }
        let value = if key == "file.password" { raw.as_str() } else { raw.trim() };
        let fault = if HEADER_PARAMS.contains(&key.as_str()) {
            first_fault(value, false).map(|f| (f, "it is sent in an HTTP header, which carries only visible ASCII (letters, digits, punctuation)"))
        } else if TEXT_PARAMS.contains(&key.as_str()) {
            first_fault(value, true).map(|f| (f, where_text_goes(key)))
        } else {
            None
        };
        if let Some(((what, at), why)) = fault {
            let code = if key == "file.password" { codes::PASSWORD_NEEDS_ZIP } else { codes::BAD_AWS_PARAM };
            return Err(RequestError {
                code,
                msg: format!(
                    "destination.params.{key} has {what} at character {at}: {why}; send the value without it"
                ),
            });
        }
    }
    Ok(())
}

/// The longest value a parameter may have, by what AWS accepts (access key ids are 16–128
/// characters, STS session tokens a few KB, KMS key ARNs about 2 KB, key prefixes part of a
/// 1,024-byte key). A megabyte-long key was queued and every run then failed inside the
/// signer and the error scrubber.
fn longest(key: &str) -> Option<usize> {
    match key {
        "aws.accesskey" | "aws.secretkey" | "azure.accesskey" => Some(128),
        "aws.sessiontoken" => Some(8192),
        "aws.kmskeyid" | "aws.endpoint" | "azure.endpoint" | "gcs.endpoint" | "azure.sastoken" => Some(2048),
        "aws.prefix" | "file.password" | "file.directory" | "azure.prefix" | "gcs.prefix" => Some(512),
        // A service account's JSON key is about 2.3 KB.
        "gcs.credentials" => Some(16_384),
        _ => None,
    }
}

fn where_text_goes(key: &str) -> &'static str {
    match key {
        "aws.prefix" | "azure.prefix" | "gcs.prefix" | "file.directory" => {
            "it becomes part of every object key, where S3 and its listings cannot keep control characters"
        }
        "aws.endpoint" | "azure.endpoint" | "gcs.endpoint" => {
            "a URL holds no control characters (and some would be silently dropped, changing the address)"
        }
        _ => {
            "the password must be typed when the file is opened, which cannot be done with control characters"
        }
    }
}

/// The first character the rule refuses, described (never shown), and its 1-based position.
fn first_fault(value: &str, text: bool) -> Option<(&'static str, usize)> {
    value.chars().enumerate().find_map(|(i, c)| {
        let what = match c {
            '\r' | '\n' => "a line break (CR or LF)",
            '\0' => "a NUL character",
            '\t' => "a tab",
            c if c.is_control() => "a control character",
            _ if text => return None,
            ' ' => "a space",
            c if !c.is_ascii() => "a non-ASCII character",
            _ => return None,
        };
        Some((what, i + 1))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn one(key: &str, value: &str) -> Result<(), RequestError> {
        check(json!({ key: value }).as_object().unwrap())
    }

    #[test]
    fn values_longer_than_aws_takes_are_refused_without_echo() {
        for (key, most) in [
            ("aws.accesskey", 128),
            ("aws.secretkey", 128),
            ("aws.sessiontoken", 8192),
            ("aws.kmskeyid", 2048),
            ("file.password", 512),
        ] {
            assert!(one(key, &"A".repeat(most)).is_ok(), "{key}");
            let err = one(key, &"QZX".repeat(400_000)).unwrap_err();
            assert!(
                err.msg.contains(key) && err.msg.contains("at most") && !err.msg.contains("QZX"),
                "{}",
                err.msg
            );
        }
    }

    #[test]
    fn header_values_are_visible_ascii() {
        for key in HEADER_PARAMS {
            assert_eq!(one(key, "AKIA/abc+def=_-:"), Ok(()), "{key}");
            for (bad, says) in [
                ("AKIA\r\nX", "line break"),
                ("AK\0IA", "NUL"),
                ("AK\tIA", "tab"),
                ("AKIAé", "non-ASCII"),
                ("AK IA", "space"),
            ] {
                let e = one(key, bad).unwrap_err();
                assert_eq!(e.code, codes::BAD_AWS_PARAM, "{key}");
                assert!(
                    e.msg.contains(key) && e.msg.contains(says) && !e.msg.contains("AK"),
                    "{key}: {}",
                    e.msg
                );
            }
        }
    }

    #[test]
    fn keys_urls_and_passwords_take_any_text_but_control_characters() {
        assert_eq!(one("aws.prefix", "exports/été 2026/"), Ok(()));
        assert_eq!(one("file.password", "pässwörd with spaces"), Ok(()));
        assert_eq!(one("file.password", "secret\n").unwrap_err().code, codes::PASSWORD_NEEDS_ZIP);
        let e = one("aws.endpoint", "http://127.0.0.1\t:4566").unwrap_err();
        assert!(
            e.code == codes::BAD_AWS_PARAM && e.msg.contains("tab") && e.msg.contains("character 17"),
            "{}",
            e.msg
        );
        // Surrounding whitespace is trimmed, as the parser trims it, but for the password.
        assert_eq!(one("aws.accesskey", " AKIA\n"), Ok(()));
    }

    proptest! {
        #[test]
        fn no_control_character_passes_anywhere(
            key in prop::sample::select([HEADER_PARAMS, TEXT_PARAMS].concat()),
            c in prop_oneof![0u32..0x20, Just(0x7f), 0x80u32..0xa0].prop_map(|n| char::from_u32(n).unwrap()),
            // Marked, so that a value echoed in the message would be found there.
            before in "QZX[A-Za-z0-9]{0,17}",
            after in "ZQJ[A-Za-z0-9]{0,17}",
        ) {
            let value = format!("{before}{c}{after}");
            let e = one(key, &value).unwrap_err();
            prop_assert!(e.msg.contains(key) && !e.msg.contains(&before) && !e.msg.contains(&after), "{}", e.msg);
            prop_assert!(e.msg.contains(&format!("character {}", before.len() + 1)), "{}", e.msg);
        }
    }
}
