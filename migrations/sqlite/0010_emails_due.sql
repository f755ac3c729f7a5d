-- The ending a job's recipients are still to be told of: the status it ended as (NULL: none
-- due), who is telling them and until when that holds. Recorded with the ending itself, so
-- that a process killed between the two loses no email: once the hold runs out (or its
-- holder is found dead), any worker sends it.
ALTER TABLE jobs ADD COLUMN email_due TEXT;
ALTER TABLE jobs ADD COLUMN email_owner TEXT;
ALTER TABLE jobs ADD COLUMN email_until INTEGER;
CREATE INDEX jobs_emails_due ON jobs (email_until) WHERE email_due IS NOT NULL;
