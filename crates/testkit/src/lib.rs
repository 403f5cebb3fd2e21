//! Given/when/then fixtures for aggregates and sagas, with no infrastructure: given past events, when a
//! command arrives, then these events (or this rejection). They arrive with the `Aggregate` contract in
//! crates/core (the command-processing issue); the crate exists now so the workspace has its final shape.
#![forbid(unsafe_code)]
