//! What a finished object looks like from outside (its ETag and CRC32 checksum), computed from
//! what we sent. When the answer to a completion or a put is lost, the SDK sends the call
//! again, and `If-None-Match: *` refuses it because our own first attempt already wrote the
//! object; comparing the stored object with this fingerprint tells that case from another
//! writer's object, which must stay an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};

use super::UploadedPart;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The quoted ETag S3 gives an unencrypted or SSE-S3 object.
    etag: Option<String>,
    /// The base64 CRC32 (for a multipart object, the composite one without its `-N`).
    crc32: Option<String>,
}

impl Fingerprint {
    /// An object written by one `PutObject` of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self {
            etag: Some(format!("\"{}\"", hex::encode(Md5::digest(data)))),
            crc32: Some(B64.encode(crc32fast::hash(data).to_be_bytes())),
        }
    }

    /// An object completed from `parts` (in part-number order): S3's multipart ETag is the MD5
    /// of the parts' binary MD5s followed by `-<count>`, and its composite CRC32 is the CRC32
    /// of the parts' binary CRC32s.
    pub fn of_parts(parts: &[UploadedPart]) -> Self {
        let etag = parts
            .iter()
            .map(|p| hex::decode(p.etag.trim_matches('"')).ok().filter(|d| d.len() == 16))
            .collect::<Option<Vec<_>>>()
            .map(|digests| format!("\"{}-{}\"", hex::encode(Md5::digest(digests.concat())), parts.len()));
        let crc32 = parts
            .iter()
            .map(|p| p.checksum_crc32.as_deref().and_then(|c| B64.decode(c).ok()))
            .collect::<Option<Vec<_>>>()
            .map(|raw| B64.encode(crc32fast::hash(&raw.concat()).to_be_bytes()));
        Self { etag, crc32 }
    }

    /// Whether a stored object with this ETag and CRC32 checksum is the one we wrote: either
    /// one matching is proof, as both are digests of the content. The checksum survives
    /// SSE-KMS (which changes ETags); the ETag covers a store that reports the checksum in
    /// another form (a full-object CRC32 of a multipart object, say).
    pub fn matches(&self, etag: Option<&str>, crc32: Option<&str>) -> bool {
        let crc_matches = matches!((&self.crc32, crc32), (Some(ours), Some(theirs)) if theirs.split('-').next() == Some(ours.as_str()));
        let etag_matches = matches!((&self.etag, etag), (Some(ours), Some(theirs)) if ours == theirs);
        crc_matches || etag_matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: i32, data: &[u8]) -> UploadedPart {
        let single = Fingerprint::of_bytes(data);
        UploadedPart { number, etag: single.etag.unwrap(), checksum_crc32: single.crc32 }
    }

    #[test]
    fn a_single_put_is_known_by_its_md5_and_crc32() {
        let f = Fingerprint::of_bytes(b"hello");
        // `md5 -s hello` and `crc32` of the same bytes.
        assert!(f.matches(Some("\"5d41402abc4b2a76b9719d911017c592\""), None));
        assert!(f.matches(None, Some(&B64.encode(0x3610a686u32.to_be_bytes()))));
        assert!(!f.matches(Some("\"00000000000000000000000000000000\""), None));
        assert!(!f.matches(None, None), "nothing to compare is not a match");
    }

    #[test]
    fn a_multipart_object_is_known_by_its_composite_etag_and_checksum() {
        let parts = [part(1, b"first"), part(2, b"second")];
        let f = Fingerprint::of_parts(&parts);
        let md5s = [Md5::digest(b"first").to_vec(), Md5::digest(b"second").to_vec()].concat();
        assert!(f.matches(Some(&format!("\"{}-2\"", hex::encode(Md5::digest(&md5s)))), None));
        let crcs =
            [crc32fast::hash(b"first").to_be_bytes(), crc32fast::hash(b"second").to_be_bytes()].concat();
        assert!(f.matches(None, Some(&format!("{}-2", B64.encode(crc32fast::hash(&crcs).to_be_bytes())))));
        // Another writer's object under the same key.
        let other = Fingerprint::of_parts(&[part(1, b"first"), part(2, b"other")]);
        assert!(!other.matches(Some(&format!("\"{}-2\"", hex::encode(Md5::digest(&md5s)))), None));
    }

    #[test]
    fn either_digest_is_enough_when_the_other_is_in_another_form() {
        let f = Fingerprint::of_bytes(b"data");
        let crc = B64.encode(crc32fast::hash(b"data").to_be_bytes());
        assert!(f.matches(Some("\"kms-etag-is-not-an-md5\""), Some(&crc)), "SSE-KMS changes the ETag");
        assert!(f.matches(f.etag.as_deref(), Some("AAAAAA==")), "a checksum of another type");
        assert!(!f.matches(Some("\"kms-etag-is-not-an-md5\""), Some("AAAAAA==")));
    }
}
