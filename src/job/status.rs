use serde::{Deserialize, Serialize};

/// Devo's job statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Created,
    Running,
    Completed,
    Stopped,
    Failed,
    Removed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Created,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Stopped,
        JobStatus::Failed,
        JobStatus::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Stopped => "STOPPED",
            JobStatus::Failed => "FAILED",
            JobStatus::Removed => "REMOVED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// A job that will not run again by itself.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Removed)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_status_back() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(JobStatus::parse("running"), Some(JobStatus::Running));
        assert_eq!(JobStatus::parse("nope"), None);
    }
}
