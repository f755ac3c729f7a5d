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

/// What an operator asks of a job (Devo's `stop`, `start` and `remove` paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Stop,
    Start,
    Remove,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Stop => "STOP",
            Command::Start => "START",
            Command::Remove => "REMOVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Command::Stop, Command::Start, Command::Remove].into_iter().find(|c| c.as_str() == s)
    }
}

/// What a [`Command`] does to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nobody runs the job: it changes status at once.
    Become(JobStatus),
    /// A worker runs the job: it is told at its next heartbeat and ends the run itself.
    TellWorker,
}

/// The lifecycle, in one place. `pending` is a command a running job's worker has not yet
/// acted on. An invalid transition is refused with a message saying why; it changes nothing.
pub fn plan(command: Command, status: JobStatus, pending: Option<Command>) -> Result<Effect, String> {
    use JobStatus::*;
    match (command, status) {
        (Command::Stop, Created) => Ok(Effect::Become(Stopped)),
        (Command::Stop | Command::Remove, Running) if pending == Some(Command::Remove) => {
            Err("the job is being removed".into())
        }
        (Command::Stop, Running) => Ok(Effect::TellWorker),
        (Command::Start, Stopped) => Ok(Effect::Become(Created)),
        (Command::Start, Running) if pending == Some(Command::Stop) => {
            Err("the job is stopping; start it again once its status is STOPPED".into())
        }
        (Command::Remove, Running) => Ok(Effect::TellWorker),
        (Command::Remove, Removed) => Err("the job is already REMOVED".into()),
        (Command::Remove, _) => Ok(Effect::Become(Removed)),
        (Command::Stop, Stopped) => Err("the job is already STOPPED".into()),
        (Command::Start, Created | Running) => Err(format!("the job is already {status}")),
        (Command::Start, Removed) => {
            Err("a REMOVED job cannot be started again; submit the query again".into())
        }
        (Command::Stop, Completed | Failed | Removed) => {
            Err(format!("the job has already ended ({status}); there is nothing to stop"))
        }
        (Command::Start, Completed | Failed) => Err(format!(
            "the job has ended ({status}); only a STOPPED job can be started again: submit the query again"
        )),
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

    #[test]
    fn lifecycle_allows_only_the_documented_transitions() {
        use Command::*;
        use JobStatus::*;
        let ok = |c, s| plan(c, s, None).unwrap();
        assert_eq!(ok(Stop, Created), Effect::Become(Stopped));
        assert_eq!(ok(Stop, Running), Effect::TellWorker);
        assert_eq!(ok(Start, Stopped), Effect::Become(Created));
        assert_eq!(ok(Remove, Running), Effect::TellWorker);
        for s in [Created, Completed, Stopped, Failed] {
            assert_eq!(ok(Remove, s), Effect::Become(Removed));
        }
        for (c, s) in [
            (Stop, Stopped),
            (Stop, Completed),
            (Stop, Failed),
            (Stop, Removed),
            (Start, Created),
            (Start, Running),
            (Start, Completed),
            (Start, Failed),
            (Start, Removed),
            (Remove, Removed),
        ] {
            let why = plan(c, s, None).unwrap_err();
            assert!(why.contains(s.as_str()), "{c:?} on {s}: {why}");
        }
        assert!(plan(Start, Running, Some(Stop)).unwrap_err().contains("stopping"));
        assert!(plan(Stop, Running, Some(Remove)).unwrap_err().contains("removed"));
        for c in [Stop, Start, Remove] {
            assert_eq!(Command::parse(c.as_str()), Some(c));
        }
    }
}
