//! ClickHouse's tagged exception frame: how a streamed answer whose status (200) is already
//! sent says that it failed part way. The body ends with
//!
//! ```text
//! \r\n__exception__\r\n<tag>\r\n<message>\n<len> <tag>\r\n__exception__\r\n
//! ```
//!
//! where `<tag>` is 16 random lowercase letters and digits announced up front in the
//! `X-ClickHouse-Exception-Tag` header, and `<len>` is the length in bytes of `<message>\n`
//! (the message with its line feed). A client looks for the frame only at the very end of
//! the body and only with the tag of its own response, which no row could have guessed: zero
//! false positives. Clients written for ClickHouse's HTTP interface (25.11 and later) read it
//! as they read ClickHouse's own.

/// The response header that announces the tag.
pub const TAG_HEADER: &str = "X-ClickHouse-Exception-Tag";

/// Length of a tag.
pub const TAG_LEN: usize = 16;

/// The longest message a frame carries (longer ones are cut, on a character boundary), so
/// that a client needs to hold back only [`MAX_FRAME`] bytes to find it.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// The longest frame there is: what a client must hold back to strip one.
pub const MAX_FRAME: usize = OPEN.len() + 2 * TAG_LEN + 2 + MAX_MESSAGE + 1 + 6 + 1 + CLOSE.len();

const OPEN: &[u8] = b"\r\n__exception__\r\n";
const CLOSE: &[u8] = b"\r\n__exception__\r\n";

/// A new random tag: 16 lowercase ASCII letters and digits.
pub fn new_tag() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut tag = String::with_capacity(TAG_LEN);
    while tag.len() < TAG_LEN {
        // Below 252 (= 7 × 36) every letter is equally likely.
        let b: u8 = rand::random();
        if b < 252 {
            tag.push(ALPHABET[(b % 36) as usize] as char);
        }
    }
    tag
}

/// The frame that ends a failed body with `message` (cut to [`MAX_MESSAGE`] bytes).
pub fn frame(tag: &str, message: &str) -> Vec<u8> {
    let mut cut = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = &message[..cut];
    let mut out = Vec::with_capacity(message.len() + 96);
    out.extend_from_slice(OPEN);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
    out.extend_from_slice((message.len() + 1).to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(CLOSE);
    out
}

/// If `body` ends with a complete frame of `tag`, where the frame starts (everything before
/// it is the clean result) and its message. Strict: every separator, the tag at both ends
/// and the declared length must be exactly right, or it is no frame.
pub fn find_frame(body: &[u8], tag: &str) -> Option<(usize, String)> {
    let tag = tag.as_bytes();
    let before_close = body.strip_suffix(CLOSE)?.strip_suffix(tag)?.strip_suffix(b" ")?;
    let digits = before_close.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 6 {
        return None;
    }
    let (with_message, len) = before_close.split_at(before_close.len() - digits);
    let len: usize = std::str::from_utf8(len).ok()?.parse().ok()?;
    if len == 0 || len > with_message.len() {
        return None;
    }
    let (head, message) = with_message.split_at(with_message.len() - len);
    let message = message.strip_suffix(b"\n")?;
    let head = head.strip_suffix(b"\r\n")?.strip_suffix(tag)?.strip_suffix(OPEN)?;
    Some((head.len(), String::from_utf8_lossy(message).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_clickhouses_byte_for_byte() {
        let tag = "0123456789abcdef";
        assert_eq!(
            frame(tag, "Code: 395. DB::Exception: boom"),
            b"\r\n__exception__\r\n0123456789abcdef\r\nCode: 395. DB::Exception: boom\n31 0123456789abcdef\r\n__exception__\r\n"
        );
    }

    #[test]
    fn tags_are_sixteen_lowercase_letters_and_digits_and_differ() {
        let (a, b) = (new_tag(), new_tag());
        assert_eq!(a.len(), TAG_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn a_frame_is_found_only_whole_at_the_end_with_its_own_tag() {
        let tag = new_tag();
        let rows = b"a\tb\n1\t2\n".to_vec();
        let body = [rows.clone(), frame(&tag, "query failed: Divide by zero\nsecond line")].concat();
        assert_eq!(
            find_frame(&body, &tag),
            Some((rows.len(), "query failed: Divide by zero\nsecond line".into()))
        );
        assert_eq!(find_frame(&body, &new_tag()), None, "another response's tag");
        assert_eq!(find_frame(&body[..body.len() - 1], &tag), None, "cut short");
        assert_eq!(find_frame(&[body.clone(), b"x".to_vec()].concat(), &tag), None, "not at the end");
        assert_eq!(find_frame(&rows, &tag), None);
        // A declared length that does not match the message is no frame.
        let forged = String::from_utf8(body.clone()).unwrap().replace("\n41 ", "\n42 ");
        assert_ne!(forged.as_bytes(), body);
        assert_eq!(find_frame(forged.as_bytes(), &tag), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary_and_fit_the_hold_back() {
        let tag = new_tag();
        let message = "é".repeat(MAX_MESSAGE);
        let f = frame(&tag, &message);
        assert!(f.len() <= MAX_FRAME, "{} > {MAX_FRAME}", f.len());
        let (start, found) = find_frame(&f, &tag).unwrap();
        assert_eq!(start, 0);
        assert_eq!(found.len(), MAX_MESSAGE);
    }
}
