//! Lost answers from S3: retried creates, parts and completes leave no upload open.
