//! Which `Range` headers a download honours. tower-http's `ServeFile` answers the ranges it
//! can serve (206, or 416 with `Content-Range: bytes */<size>` for one past the end) and
//! refuses everything else with 416; RFC 9110 §14.2 asks a server to ignore what it cannot
//! use instead, and send the whole file (200): a `Range` it cannot parse (`bytes=5-2`,
//! `items=0-1`, a number past u64), several ranges at once (which would need a multipart
//! answer), and a range whose `If-Range` names another version of the file than this one.

use std::time::SystemTime;

use axum::http::{HeaderMap, header};

/// Drops `Range` from `headers` unless it is one well-formed byte range that applies to the
/// file last modified at `modified`.
pub fn drop_unusable_range(headers: &mut HeaderMap, modified: Option<SystemTime>) {
    let Some(range) = headers.get(header::RANGE) else { return };
    let usable = range.to_str().ok().is_some_and(is_one_byte_range)
        && headers.get(header::IF_RANGE).is_none_or(|v| {
            // Only a date can match: no ETag is ever sent. The date must be the file's own.
            let date = v.to_str().ok().and_then(|v| httpdate::parse_http_date(v).ok());
            matches!((date, modified), (Some(d), Some(m)) if same_second(d, m))
        });
    if !usable {
        headers.remove(header::RANGE);
    }
}

/// `bytes=<first>-[<last>]` with `first <= last`, or `bytes=-<suffix>`; numbers that fit u64.
fn is_one_byte_range(value: &str) -> bool {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return false };
    let Some((first, last)) = spec.trim().split_once('-') else { return false };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => number(suffix).is_some_and(|n| n > 0),
        (first, "") => number(first).is_some(),
        (first, last) => matches!((number(first), number(last)), (Some(a), Some(b)) if a <= b),
    }
}

fn same_second(a: SystemTime, b: SystemTime) -> bool {
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).ok();
    secs(a) == secs(b)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::HeaderValue;

    use super::*;

    fn kept(range: &str, if_range: Option<&str>, modified: SystemTime) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(v) = if_range {
            headers.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        drop_unusable_range(&mut headers, Some(modified));
        headers.contains_key(header::RANGE)
    }

    #[test]
    fn only_one_well_formed_byte_range_for_this_file_is_kept() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        for good in
            ["bytes=0-99", "bytes=100-", "bytes=-500", "bytes=5-5", "bytes= 0-99", "bytes=99999999999-"]
        {
            assert!(kept(good, None, modified), "{good}");
        }
        for bad in [
            "bytes=5-2",
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=-0",
            "bytes=a-b",
            "bytes=0-99999999999999999999999",
            "bytes=",
            "bytes=-",
            "0-99",
        ] {
            assert!(!kept(bad, None, modified), "{bad}");
        }
        let date = httpdate::fmt_http_date(modified);
        assert!(kept("bytes=0-99", Some(&date), modified));
        let older = httpdate::fmt_http_date(modified - Duration::from_secs(60));
        assert!(!kept("bytes=0-99", Some(&older), modified), "another version: the whole file");
        assert!(!kept("bytes=0-99", Some("\"some-etag\""), modified));
    }
}
