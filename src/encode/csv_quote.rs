//! Quoting one CSV field as RFC 4180 says: the leaf that the CSV encoder, its field writers
//! and the demo table's generator all use.

/// Appends `value` as one CSV field, quoted only when it holds a comma, quote, CR or LF.
pub fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    if needs_quotes(value) {
        // Copied between the quotes it holds, which are doubled: user agents and URLs hold
        // commas, so this path is hot, and a push per byte took a quarter of a CSV stream's CPU.
        out.reserve(value.len() + 2);
        out.push(b'"');
        let mut copied = 0;
        for quote in memchr::memchr_iter(b'"', value) {
            out.extend_from_slice(&value[copied..=quote]);
            out.push(b'"');
            copied = quote + 1;
        }
        out.extend_from_slice(&value[copied..]);
        out.push(b'"');
    } else {
        out.extend_from_slice(value);
    }
}

pub(super) fn needs_quotes(value: &[u8]) -> bool {
    // Most fields are short, where two calls into memchr cost more than one folded pass (which
    // the compiler vectorises); long ones are searched by memchr.
    if value.len() < 64 {
        value.iter().fold(false, |quote, b| quote | matches!(b, b',' | b'"' | b'\n' | b'\r'))
    } else {
        memchr::memchr3(b',', b'"', b'\n', value).is_some() || memchr::memchr(b'\r', value).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string of up to five characters from the ones that matter, quoted as RFC 4180 says
    /// (a byte at a time, the plain way).
    #[test]
    fn fields_are_quoted_as_the_rfc_says() {
        let reference = |v: &[u8]| {
            if !v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
                return v.to_vec();
            }
            let mut out = vec![b'"'];
            for &b in v {
                out.extend_from_slice(if b == b'"' { b"\"\"" } else { std::slice::from_ref(&b) });
            }
            out.push(b'"');
            out
        };
        let alphabet = b"a,\"\n\r";
        let mut values = vec![Vec::new()];
        let mut last: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|v| alphabet.iter().map(move |c| [v.as_slice(), &[*c]].concat()))
                .collect();
            values.extend(last.iter().cloned());
        }
        assert!(values.len() > 3_000);
        // Short fields and long ones (searched differently).
        let long: Vec<Vec<u8>> = values.iter().map(|v| [&[b'a'; 70][..], v].concat()).collect();
        for v in values.iter().chain(&long) {
            let mut out = b"x".to_vec();
            push_field(&mut out, v);
            assert_eq!(out[1..], reference(v)[..], "{:?}", String::from_utf8_lossy(v));
        }
    }
}
