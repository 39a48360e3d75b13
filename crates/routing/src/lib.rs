//! The routing service. `config` is the queue and entry-point aggregate
//! (stream `config-queues`); `decision` is the pure choice of who gets which
//! waiting conversation (B3.2, B3.3, B3.5); `view` is the read model the
//! decision reads. Those three are free of I/O; `service` is the shell.

pub mod config;
pub mod decision;
pub mod service;
pub mod view;
