//! Queries that would overflow the stack or allocate past the memory budget, and CSV tables with quoted newlines.
