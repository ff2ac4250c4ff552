//! What the running chains tell: events, per-subflow records and stage
//! counters, the Prometheus endpoint, and whether each attach point is
//! really running.

pub mod events;
pub mod health;
pub mod metrics;
pub mod stats;
