//! herald-lab: test harness library.
