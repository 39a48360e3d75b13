//! End-to-end tests of Switchboard: the real `switchboard` binary, as a user
//! runs it, against a real `nats-server` (started per test by `testkit`).
//! Each file here is one test target; see `Cargo.toml`.
