//! ringcache: a thread-per-core io_uring caching HTTP/1.1 reverse proxy that speaks Varnish.
//!
//! The crate is split by domain: `http` (wire format), `cache` (objects, TTL rules, per-shard
//! store), `backend` (per-core pools and fetches), `server` (boot, shards, sessions, the
//! cross-shard path), `health` (the poller and the health board), `stats` (counters, `stat`
//! readings, the Prometheus endpoint), `logs` (event and access logs, written off the shards)
//! and `params` (the one table of runtime parameters), `admin` (the Varnish CLI on `-T` and its
//! clients), `lifecycle` (signals, reload, drain, systemd notifications), `bans` (the ban
//! list's owner). The control plane (flags, boot, poller, admin, lifecycle, bans) and the data
//! plane (shards) share only immutable snapshots (published under a generation counter) and
//! atomics.

pub mod admin;
pub mod backend;
pub mod bans;
pub mod cache;
pub mod cli;
pub mod control;
pub mod director;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod logs;
pub mod params;
pub mod server;
pub mod stats;
pub mod vcl;
