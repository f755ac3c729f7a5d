//! The email itself: plain text and HTML alternatives with the job's status, rows, parts
//! (paths as links, sizes), duration and error. Recipients were validated when the job was
//! submitted, and lettre encodes every header, so no header can be injected.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use crate::job::{JobStatus, PartRecord};

#[derive(Debug, Clone)]
pub struct JobSummary {
    pub job_id: String,
    pub status: JobStatus,
    pub query: String,
    pub rows: u64,
    pub parts: Vec<PartRecord>,
    pub duration: Duration,
    pub errors: Vec<String>,
    pub recipients: Vec<String>,
}

pub fn compose(s: &JobSummary, from: &str) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|e| format!("sender address {from:?}: {e}"))?;
    let mut builder = Message::builder().from(from).subject(format!(
        "Forwarder job {} {}: {} in {}",
        s.job_id,
        s.status,
        counted(s.rows, "row"),
        counted(s.parts.len() as u64, "part")
    ));
    for r in &s.recipients {
        builder = builder.to(r.parse().map_err(|e| format!("recipient {r:?}: {e}"))?);
    }
    builder.multipart(MultiPart::alternative_plain_html(text(s), html(s))).map_err(|e| e.to_string())
}

/// `1 part`, `3,000 rows`: what a reader expects, not `1 parts` and `3000 rows`.
fn counted(n: u64, noun: &str) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} {noun}{}", if n == 1 { "" } else { "s" })
}

fn total_bytes(s: &JobSummary) -> String {
    human_bytes(s.parts.iter().map(|p| p.bytes).sum())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1} s", d.as_secs_f64()),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn text(s: &JobSummary) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "Forwarder job {} ended: {}", s.job_id, s.status);
    let _ = writeln!(t);
    let _ = writeln!(t, "Query:    {}", s.query);
    let _ = writeln!(t, "Rows:     {}", counted(s.rows, "row"));
    let _ = writeln!(t, "Parts:    {}, {}", counted(s.parts.len() as u64, "part"), total_bytes(s));
    let _ = writeln!(t, "Duration: {}", human_duration(s.duration));
    for e in &s.errors {
        let _ = writeln!(t, "Error:    {e}");
    }
    if !s.parts.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Files:");
        for p in &s.parts {
            let _ = writeln!(t, "  {}  ({}, {})", p.url, human_bytes(p.bytes), counted(p.rows, "row"));
        }
    }
    t
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(s: &JobSummary) -> String {
    let mut h = String::new();
    let color = match s.status {
        JobStatus::Completed => "#1a7f37",
        JobStatus::Failed => "#cf222e",
        _ => "#9a6700",
    };
    let _ = write!(
        h,
        "<html><body style=\"font-family:sans-serif\"><h2>Forwarder job <code>{}</code> ended: \
         <span style=\"color:{color}\">{}</span></h2><table>\
         <tr><th align=left>Query</th><td><code>{}</code></td></tr>\
         <tr><th align=left>Rows</th><td>{}</td></tr>\
         <tr><th align=left>Parts</th><td>{}, {}</td></tr>\
         <tr><th align=left>Duration</th><td>{}</td></tr>",
        escape(&s.job_id),
        s.status,
        escape(&s.query),
        counted(s.rows, "row"),
        counted(s.parts.len() as u64, "part"),
        total_bytes(s),
        human_duration(s.duration)
    );
    for e in &s.errors {
        let _ = write!(h, "<tr><th align=left>Error</th><td style=\"color:#cf222e\">{}</td></tr>", escape(e));
    }
    h.push_str("</table>");
    if !s.parts.is_empty() {
        h.push_str("<h3>Files</h3><ul>");
        for p in &s.parts {
            let url = escape(&p.url);
            let _ = write!(
                h,
                "<li><a href=\"{url}\">{url}</a> ({}, {})</li>",
                human_bytes(p.bytes),
                counted(p.rows, "row")
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> JobSummary {
        JobSummary {
            job_id: "j1".into(),
            status: JobStatus::Failed,
            query: "SELECT * FROM t WHERE a < 3".into(),
            rows: 10,
            parts: vec![PartRecord {
                index: 1,
                key: "apiv2_j1_001.csv.gz".into(),
                url: "http://s3/b/apiv2_j1_001.csv.gz".into(),
                bytes: 2_500_000,
                rows: 10,
                rows_before: 0,
                completed_at_ms: 0,
                resume: Default::default(),
                sha256: String::new(),
            }],
            duration: Duration::from_secs(75),
            errors: vec!["S3 <boom>".into()],
            recipients: vec!["ops@example.com".into()],
        }
    }

    #[test]
    fn text_and_html_carry_everything() {
        let s = summary();
        let t = text(&s);
        assert!(
            t.contains("FAILED") && t.contains("http://s3/b/apiv2_j1_001.csv.gz") && t.contains("2.5 MB")
        );
        assert!(t.contains("1 min 15 s") && t.contains("S3 <boom>"));
        let h = html(&s);
        assert!(h.contains("<a href=\"http://s3/b/apiv2_j1_001.csv.gz\">"));
        assert!(h.contains("S3 &lt;boom&gt;") && h.contains("a &lt; 3"));
        let m = compose(&s, "Forwarder <fwd@localhost>").unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("To: ops@example.com"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("Subject: Forwarder job j1 FAILED: 10 rows in 1 part\r\n"), "{raw}");
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(counted(1, "part"), "1 part");
        assert_eq!(counted(0, "row"), "0 rows");
        assert_eq!(counted(3_000, "row"), "3,000 rows");
        assert_eq!(counted(12_345_678, "row"), "12,345,678 rows");
        assert_eq!(counted(999, "row"), "999 rows");
    }
}
