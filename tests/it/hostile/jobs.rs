//! Jobs that crash their worker, tenants that crowd each other out, a restart after kill -9.
