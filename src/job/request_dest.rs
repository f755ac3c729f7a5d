//! The params of the destinations beyond Devo's S3: where the parts go (`file`, `azure`,
//! `gcs`) and as whom. Each type has its own names, its own checks and its own secrets; what
//! every type shares (format, retention, email) is parsed by [`super::request`].

use serde_json::{Map, Value};

use super::refusal::{RequestError, codes, shown};
use super::spec::{DestinationType, JobSecrets};
use crate::secret::Secret;

/// Params only `file` destinations take.
pub const FILE_PARAMS: &[&str] = &["file.directory"];
/// Params only `azure` destinations take.
pub const AZURE_PARAMS: &[&str] = &[
    "azure.account",
    "azure.container",
    "azure.accesskey",
    "azure.sastoken",
    "azure.endpoint",
    "azure.prefix",
];
/// Params only `gcs` destinations take.
pub const GCS_PARAMS: &[&str] = &["gcs.bucket", "gcs.credentials", "gcs.endpoint", "gcs.prefix"];

/// Where a destination writes, and with which secrets.
#[derive(Debug, Default)]
pub struct Place {
    pub bucket: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// The part keys are `prefix + apiv2_…`.
    pub prefix: String,
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    pub secrets: JobSecrets,
}

fn bad<T>(msg: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError { code: codes::BAD_STORE_PARAM, msg: msg.into() })
}

/// A trimmed text param; absent, `null` and blank are `None`.
pub fn text(params: &Map<String, Value>, key: &str, code: u16) -> Result<Option<String>, RequestError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(RequestError { code, msg: format!("destination.params.{key} must be a string") }),
    }
}

/// Where a `file`, `azure` or `gcs` destination writes; `S3` is parsed by the caller.
pub fn place(kind: DestinationType, params: &Map<String, Value>) -> Result<Place, RequestError> {
    let text = |key: &str| text(params, key, codes::BAD_STORE_PARAM);
    match kind {
        DestinationType::S3 | DestinationType::Download => Ok(Place::default()),
        DestinationType::File => {
            let directory = text("file.directory")?.unwrap_or_default();
            Ok(Place { prefix: relative_directory(&directory)?, ..Place::default() })
        }
        DestinationType::Azure => {
            let account = text("azure.account")?
                .map_or_else(|| bad("azure.account is missing: name the storage account"), Ok)?;
            if !((3..=24).contains(&account.len())
                && account.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
            {
                // The value is not quoted: a caller who swapped the account and its key would
                // see the key in the answer.
                return bad(format!(
                    "azure.account is not a storage account name (3-24 lowercase letters and digits; \
                     the value given has {} characters): is it the account key?",
                    account.chars().count()
                ));
            }
            let container = text("azure.container")?
                .map_or_else(|| bad("azure.container is missing: name the blob container"), Ok)?;
            if !valid_container_name(&container) {
                return bad(format!(
                    "azure.container \"{}\" is not a container name (3-63 lowercase letters, digits and \
                     single hyphens, starting and ending with a letter or digit)",
                    shown(&container)
                ));
            }
            let (key, sas) = (text("azure.accesskey")?, text("azure.sastoken")?);
            if key.is_some() == sas.is_some() {
                return Err(RequestError {
                    code: codes::STORE_NEEDS_CREDENTIALS,
                    msg: "an azure destination needs exactly one of azure.accesskey (the account key) \
                          and azure.sastoken (a shared access signature)"
                        .into(),
                });
            }
            let secrets = JobSecrets {
                account_key: key.map(Secret::new),
                sas_token: sas.map(|s| Secret::new(s.trim_start_matches('?').to_string())),
                ..JobSecrets::default()
            };
            Ok(Place {
                bucket: Some(container),
                account: Some(account),
                endpoint: endpoint(text("azure.endpoint")?, "azure.endpoint")?,
                prefix: key_prefix(text("azure.prefix")?, "azure.prefix")?,
                secrets,
                ..Place::default()
            })
        }
        DestinationType::Gcs => {
            let bucket =
                text("gcs.bucket")?.map_or_else(|| bad("gcs.bucket is missing: name the bucket"), Ok)?;
            if !valid_gcs_bucket(&bucket) {
                return bad(format!(
                    "gcs.bucket \"{}\" is not a bucket name (3-63 lowercase letters, digits, dots, hyphens \
                     and underscores, starting and ending with a letter or digit)",
                    shown(&bucket)
                ));
            }
            let credentials = text("gcs.credentials")?.map_or_else(
                || {
                    Err(RequestError {
                        code: codes::STORE_NEEDS_CREDENTIALS,
                        msg: "gcs.credentials is missing: give the service account's JSON key".into(),
                    })
                },
                Ok,
            )?;
            let parsed: Value = serde_json::from_str(&credentials).map_err(|_| RequestError {
                code: codes::STORE_NEEDS_CREDENTIALS,
                msg: "gcs.credentials must be a service account's JSON key (a JSON object)".into(),
            })?;
            if !parsed.is_object() {
                return Err(RequestError {
                    code: codes::STORE_NEEDS_CREDENTIALS,
                    msg: "gcs.credentials must be a service account's JSON key (a JSON object)".into(),
                });
            }
            // object_store would send the requests wherever the key file says, past the
            // internal-address guard that gcs.endpoint goes through.
            if parsed.get("gcs_base_url").is_some() {
                return bad("gcs.credentials must not hold gcs_base_url; give the endpoint as gcs.endpoint");
            }
            Ok(Place {
                bucket: Some(bucket),
                endpoint: endpoint(text("gcs.endpoint")?, "gcs.endpoint")?,
                prefix: key_prefix(text("gcs.prefix")?, "gcs.prefix")?,
                secrets: JobSecrets {
                    service_account: Some(Secret::new(credentials)),
                    ..JobSecrets::default()
                },
                ..Place::default()
            })
        }
    }
}

fn endpoint(value: Option<String>, name: &str) -> Result<Option<String>, RequestError> {
    match value {
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            bad(format!("{name} must be an http:// or https:// URL"))
        }
        other => Ok(other),
    }
}

fn key_prefix(value: Option<String>, name: &str) -> Result<String, RequestError> {
    let prefix = value.unwrap_or_default();
    if prefix.starts_with('/') || prefix.len() > 512 {
        return bad(format!("{name} must not start with '/' and must be under 512 characters"));
    }
    Ok(prefix)
}

/// `file.directory` as a key prefix (`a/b/`): relative, made of plain names. `..`, `.`, an
/// absolute path, a backslash or an empty component would name a place the operator did not
/// choose, so they are refused here (symlinks are refused where the files are written).
fn relative_directory(directory: &str) -> Result<String, RequestError> {
    if directory.is_empty() {
        return Ok(String::new());
    }
    let fix = "file.directory must be a relative path under the server's file root, made of plain names \
               separated by '/' (no '..', '.', leading '/', '\\' or empty names)";
    if directory.len() > 512 || directory.starts_with('/') || directory.contains('\\') {
        return bad(fix);
    }
    let trimmed = directory.trim_end_matches('/');
    for name in trimmed.split('/') {
        if name.is_empty() || name == "." || name == ".." || name.chars().any(char::is_control) {
            return bad(fix);
        }
    }
    Ok(format!("{trimmed}/"))
}

fn valid_container_name(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        && !c.contains("--")
}

fn valid_gcs_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_'))
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_directories_stay_under_the_root() {
        assert_eq!(relative_directory("").unwrap(), "");
        assert_eq!(relative_directory("exports/daily/").unwrap(), "exports/daily/");
        assert_eq!(relative_directory("exports").unwrap(), "exports/");
        for bad in ["../x", "a/../../x", "/etc", "a//b", "./a", "a\\..\\b", "a/./b", "a/\nb"] {
            let e = relative_directory(bad).unwrap_err();
            assert_eq!(e.code, codes::BAD_STORE_PARAM, "{bad}");
            assert!(e.msg.contains("file.directory"), "{bad}: {}", e.msg);
        }
    }

    fn params(value: serde_json::Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn gcs_params_keep_the_key_secret_and_refuse_what_would_bypass_the_guard() {
        let key = r#"{"client_email":"a@b.iam.gserviceaccount.com","private_key":"k","private_key_id":"i"}"#;
        let p = place(
            DestinationType::Gcs,
            &params(
                serde_json::json!({"gcs.bucket": "my-bucket", "gcs.credentials": key, "gcs.prefix": "x/"}),
            ),
        )
        .unwrap();
        assert_eq!((p.bucket.as_deref(), p.prefix.as_str()), (Some("my-bucket"), "x/"));
        assert_eq!(p.secrets.service_account.unwrap().expose(), key);
        let refused = |extra: serde_json::Value| {
            let mut all = serde_json::json!({"gcs.bucket": "my-bucket", "gcs.credentials": key});
            all.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            place(DestinationType::Gcs, &params(all)).unwrap_err()
        };
        assert_eq!(
            refused(serde_json::json!({"gcs.credentials": "not json"})).code,
            codes::STORE_NEEDS_CREDENTIALS
        );
        let e = refused(serde_json::json!({"gcs.credentials": r#"{"gcs_base_url":"http://10.0.0.1"}"#}));
        assert!(e.msg.contains("gcs.endpoint"), "{}", e.msg);
        assert!(refused(serde_json::json!({"gcs.endpoint": "ftp://x"})).msg.contains("http"));
        assert!(refused(serde_json::json!({"gcs.bucket": "Bad Name"})).msg.contains("gcs.bucket"));
        let e = place(DestinationType::Gcs, &params(serde_json::json!({"gcs.bucket": "b1b"}))).unwrap_err();
        assert_eq!(e.code, codes::STORE_NEEDS_CREDENTIALS);
    }

    #[test]
    fn azure_params_need_one_credential() {
        let base = serde_json::json!({"azure.account": "acct1", "azure.container": "c-1"});
        let with = |extra: serde_json::Value| {
            let mut all = base.clone();
            all.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            place(DestinationType::Azure, &params(all))
        };
        let p = with(serde_json::json!({"azure.sastoken": "?sv=1&sig=abc"})).unwrap();
        assert_eq!(p.secrets.sas_token.unwrap().expose(), "sv=1&sig=abc");
        assert_eq!(with(serde_json::json!({})).unwrap_err().code, codes::STORE_NEEDS_CREDENTIALS);
        let both = serde_json::json!({"azure.sastoken": "sv=1", "azure.accesskey": "a2V5"});
        assert_eq!(with(both).unwrap_err().code, codes::STORE_NEEDS_CREDENTIALS);
        let e = with(serde_json::json!({"azure.accesskey": "a2V5", "azure.account": "UPPER"})).unwrap_err();
        assert!(e.msg.contains("azure.account"), "{}", e.msg);
    }

    #[test]
    fn store_names_follow_the_stores_rules() {
        assert!(valid_container_name("exports-2026"));
        for bad in ["Ex", "a--b", "-ab", "ab-", "a_b", "ab"] {
            assert!(!valid_container_name(bad), "{bad}");
        }
        assert!(valid_gcs_bucket("my_bucket.v2"));
        for bad in ["My", "_ab", "ab", "a b"] {
            assert!(!valid_gcs_bucket(bad), "{bad}");
        }
    }
}
