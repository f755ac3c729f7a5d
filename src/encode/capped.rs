//! Values that go through Arrow's general formatter (lists, structs, maps, decimals, dates
//! past year 9999, …), capped in size as they are written.
//!
//! An aggregate can put a whole table into one value: `array_agg` over a 4M-row join is one
//! 240 MB list. Formatted as CSV text, copied to be quoted, that took the process to 1.3 GiB
//! after its query had ended, where no memory limit looks. A value may take at most
//! [`MAX_VALUE_BYTES`] as text (BigQuery caps an exported row at 100 MB for the same reason);
//! the formatter is stopped as soon as a value passes it, so that no more is ever built.

use std::fmt;

use datafusion::arrow::error::ArrowError;

/// The most bytes one value may take as text in a CSV, TSV or JSON Lines export.
pub const MAX_VALUE_BYTES: usize = 100 << 20;

/// Text output a value is appended to.
pub trait TextOut {
    fn push_text(&mut self, s: &str);
    fn text_len(&self) -> usize;
    fn truncate_text(&mut self, len: usize);
}

impl TextOut for Vec<u8> {
    fn push_text(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
    fn text_len(&self) -> usize {
        self.len()
    }
    fn truncate_text(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl TextOut for String {
    fn push_text(&mut self, s: &str) {
        self.push_str(s);
    }
    fn text_len(&self) -> usize {
        self.len()
    }
    fn truncate_text(&mut self, len: usize) {
        self.truncate(len);
    }
}

struct Capped<'a, T: TextOut> {
    out: &'a mut T,
    left: usize,
    over: bool,
}

impl<T: TextOut> fmt::Write for Capped<'_, T> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > self.left {
            self.over = true;
            return Err(fmt::Error);
        }
        self.left -= s.len();
        self.out.push_text(s);
        Ok(())
    }
}

/// Appends `value` as text; past [`MAX_VALUE_BYTES`] fails, with `out` as it was before.
pub fn write_value<T: TextOut>(out: &mut T, value: impl fmt::Display) -> Result<(), ArrowError> {
    let start = out.text_len();
    let mut capped = Capped { out, left: MAX_VALUE_BYTES, over: false };
    let written = fmt::write(&mut capped, format_args!("{value}"));
    let over = capped.over;
    match written {
        Ok(()) => Ok(()),
        Err(e) => {
            out.truncate_text(start);
            Err(if over {
                ArrowError::ComputeError(format!(
                    "a value of the result is larger than {} MiB as text, the most one CSV or JSON Lines \
                     value may take: aggregate fewer rows into one value (array_agg, string_agg), or export \
                     as Parquet",
                    MAX_VALUE_BYTES >> 20
                ))
            } else {
                ArrowError::ExternalError(Box::new(e))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chunks(usize);

    impl fmt::Display for Chunks {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let chunk = "x".repeat(1 << 20);
            for _ in 0..self.0 {
                f.write_str(&chunk)?;
            }
            Ok(())
        }
    }

    #[test]
    fn a_value_past_the_cap_fails_and_leaves_the_output_as_it_was() {
        let mut out = b"a,".to_vec();
        write_value(&mut out, Chunks(3)).unwrap();
        assert_eq!(out.len(), 2 + (3 << 20));
        let before = out.len();
        let err = write_value(&mut out, Chunks(MAX_VALUE_BYTES / (1 << 20) + 1)).unwrap_err();
        assert!(err.to_string().contains("larger than 100 MiB as text"), "{err}");
        assert_eq!(out.len(), before);
        let mut text = String::new();
        write_value(&mut text, Chunks(MAX_VALUE_BYTES >> 20)).unwrap();
        assert_eq!(text.len(), MAX_VALUE_BYTES);
    }
}
