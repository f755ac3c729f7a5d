//! Dates and times laid out digit by digit (no `fmt`, no allocation): the hot path of every
//! export whose rows carry a timestamp.

use std::cell::Cell;

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Two ASCII digits for every number below 100: one copy instead of two divisions.
const PAIRS: [[u8; 2]; 100] = {
    let mut table = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    table
};

/// Lays out `YYYY-MM-DD hh:mm:ss.mmm` (Devo's timestamps) for one column, remembering the
/// last row's date: the rows of an export mostly share their day with the row before, and
/// the calendar arithmetic was most of the work.
#[derive(Default)]
pub struct TimestampLayout {
    /// Days since the epoch and their `YYYY-MM-DD ` (with the space).
    last_day: Cell<Option<(i64, [u8; 11])>>,
}

impl TimestampLayout {
    /// Appends `ms` (milliseconds since the epoch) for years 0 to 9999 (what `%Y` writes with
    /// four digits); `false`, having written nothing, for any other year.
    pub fn push_ms(&self, out: &mut Vec<u8>, ms: i64) -> bool {
        let secs = ms.div_euclid(1000);
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as usize);
        let date = match self.last_day.get() {
            Some((day, date)) if day == days => date,
            _ => {
                let Some(ymd) = date(days) else { return false };
                let mut date = *b"0000-00-00 ";
                date[..10].copy_from_slice(&ymd);
                self.last_day.set(Some((days, date)));
                date
            }
        };
        let millis = ms.rem_euclid(1000) as usize;
        let mut b = *b"0000-00-00 00:00:00.000";
        b[..11].copy_from_slice(&date);
        b[11..13].copy_from_slice(&PAIRS[of_day / 3600]);
        b[14..16].copy_from_slice(&PAIRS[of_day / 60 % 60]);
        b[17..19].copy_from_slice(&PAIRS[of_day % 60]);
        b[20] = b'0' + (millis / 100) as u8;
        b[21..23].copy_from_slice(&PAIRS[millis % 100]);
        out.extend_from_slice(&b);
        true
    }
}

fn put(b: &mut [u8], at: usize, width: usize, mut v: i64) {
    for i in (at..at + width).rev() {
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `YYYY-MM-DD` for years 0 to 9999; `None` for any other.
fn date(days: i64) -> Option<[u8; 10]> {
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00";
    put(&mut b, 0, 4, year);
    put(&mut b, 5, 2, month);
    put(&mut b, 8, 2, day);
    Some(b)
}

/// `YYYY-MM-DD` for years 0 to 9999; `false`, having written nothing, for any other.
pub fn push_date(out: &mut Vec<u8>, days: i64) -> bool {
    date(days).map(|b| out.extend_from_slice(&b)).is_some()
}

/// `YYYY-MM-DDThh:mm:ss.fffZ` (ISO-8601, UTC) for `secs` since the epoch and `fraction` of
/// a second written with `digits` digits (3, 6 or 9); years 0 to 9999 only, else `false`
/// having written nothing.
pub fn push_iso_utc(out: &mut Vec<u8>, secs: i64, fraction: i64, digits: usize) -> bool {
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let start = out.len();
    if !push_date(out, days) {
        return false;
    }
    let mut b = *b"Thh:mm:ss.000000000";
    put(&mut b, 1, 2, of_day / 3600);
    put(&mut b, 4, 2, of_day / 60 % 60);
    put(&mut b, 7, 2, of_day % 60);
    put(&mut b, 10, digits, fraction);
    debug_assert!(out.len() == start + 10);
    out.extend_from_slice(&b[..10 + digits]);
    out.push(b'Z');
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(secs: i64, fraction: i64, digits: usize) -> String {
        let mut out = Vec::new();
        assert!(push_iso_utc(&mut out, secs, fraction, digits));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn devo_timestamps_match_chrono_whether_the_day_is_remembered_or_not() {
        let layout = TimestampLayout::default();
        // Each twice in a row (the second from the remembered day), then the next day.
        for ms in [0i64, 999, 1_767_261_599_999, 1_767_261_600_000, -1, 951_782_400_123, 253_402_300_799_999]
        {
            let want = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string();
            for _ in 0..2 {
                let mut out = Vec::new();
                assert!(layout.push_ms(&mut out, ms));
                assert_eq!(String::from_utf8(out).unwrap(), want);
            }
        }
        let mut out = Vec::new();
        assert!(!layout.push_ms(&mut out, 253_402_300_800_000), "year 10000 is left to the general path");
        assert!(out.is_empty());
    }

    #[test]
    fn iso_timestamps_match_chrono() {
        for secs in [0i64, -1, 1_767_261_600, 951_782_400, -62_167_219_200, 253_402_300_799] {
            let want = chrono::DateTime::from_timestamp(secs, 123_000_000).unwrap();
            assert_eq!(iso(secs, 123, 3), want.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            assert_eq!(iso(secs, 123_000, 6), want.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            assert_eq!(iso(secs, 123_000_000, 9), want.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        }
        let mut out = Vec::new();
        assert!(!push_iso_utc(&mut out, 253_402_300_800, 0, 3), "year 10000 is left to the general path");
        assert!(!push_date(&mut out, -719_529), "year -1 too");
        assert!(out.is_empty());
    }
}
