//! HTTP edges: credentials checked at submission, slow and idle clients, signed-request replays.
