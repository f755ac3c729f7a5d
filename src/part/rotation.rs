//! When a part ends. Pure: the caller reports sizes and times, the policy answers.
//!
//! Sizes are of the object as stored (compressed). A part never ends mid-row, so it may pass
//! `max_bytes` by the last row plus what the compressor still holds; [`SLACK`] keeps that
//! well under the 1 MiB the contract allows, and a row that would break it (or that is by
//! itself over the limit) starts a part of its own.

use std::time::{Duration, Instant};

/// How far past `max_bytes` a part may go before a row is moved to the next part.
pub const SLACK: u64 = 512 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationPolicy {
    /// `None`: one object for the whole result (`multiplefile=false`).
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
    /// Parquet only: a part ends once it holds this many row groups.
    pub max_row_groups: Option<u32>,
}

/// What to do around one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Keep,
    Rotate,
}

impl RotationPolicy {
    /// Before appending a row of `row_len` bytes to a part that holds `rows` rows and
    /// `stored` bytes so far.
    pub fn before_row(&self, rows: u64, stored: u64, row_len: u64) -> Rotation {
        match self.max_bytes {
            Some(max) if rows > 0 && (row_len > max || stored + row_len > max + SLACK) => Rotation::Rotate,
            _ => Rotation::Keep,
        }
    }

    /// After appending a row: the part is full once it reaches the limit, or at once when
    /// that row alone was over it.
    pub fn after_row(&self, stored: u64, row_len: u64) -> Rotation {
        match self.max_bytes {
            Some(max) if stored >= max || row_len > max => Rotation::Rotate,
            _ => Rotation::Keep,
        }
    }

    /// The part has been open `max_age` or longer.
    pub fn expired(&self, opened: Instant, now: Instant) -> bool {
        self.max_age.is_some_and(|age| now.duration_since(opened) >= age)
    }

    /// When the open part must be closed at the latest.
    pub fn deadline(&self, opened: Instant) -> Option<Instant> {
        self.max_age.map(|age| opened + age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1_000_000;
    fn sized() -> RotationPolicy {
        RotationPolicy { max_bytes: Some(MAX), ..RotationPolicy::default() }
    }

    #[test]
    fn keeps_rows_until_the_limit_is_reached() {
        let p = sized();
        assert_eq!(p.before_row(10, MAX - 100, 300), Rotation::Keep);
        assert_eq!(p.after_row(MAX - 1, 300), Rotation::Keep);
        assert_eq!(p.after_row(MAX, 300), Rotation::Rotate);
    }

    #[test]
    fn a_row_over_the_limit_gets_a_part_of_its_own() {
        let p = sized();
        assert_eq!(p.before_row(3, 10, MAX + 1), Rotation::Rotate);
        assert_eq!(p.before_row(0, 0, MAX + 1), Rotation::Keep);
        assert_eq!(p.after_row(MAX / 2, MAX + 1), Rotation::Rotate);
    }

    #[test]
    fn a_row_that_would_pass_the_slack_moves_to_the_next_part() {
        let p = sized();
        assert_eq!(p.before_row(3, MAX - 10, SLACK + 11), Rotation::Rotate);
        assert_eq!(p.before_row(3, MAX - 10, SLACK + 10), Rotation::Keep);
    }

    #[test]
    fn single_object_never_rotates_by_size() {
        let p = RotationPolicy::default();
        assert_eq!(p.before_row(1, u64::MAX / 2, 1 << 40), Rotation::Keep);
        assert_eq!(p.after_row(u64::MAX / 2, 1), Rotation::Keep);
    }

    #[test]
    fn expires_after_max_age() {
        let p = RotationPolicy { max_age: Some(Duration::from_secs(300)), ..RotationPolicy::default() };
        let t0 = Instant::now();
        assert!(!p.expired(t0, t0 + Duration::from_secs(299)));
        assert!(p.expired(t0, t0 + Duration::from_secs(300)));
        assert_eq!(p.deadline(t0), Some(t0 + Duration::from_secs(300)));
        assert!(!RotationPolicy::default().expired(t0, t0 + Duration::from_secs(1 << 30)));
    }
}
