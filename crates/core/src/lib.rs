//! The vocabulary every Causeway crate shares, with no I/O: how a failure is classified, and the
//! `Aggregate`, `Saga` and `Projection` contracts.
//!
//! # Layout
//! - [`aggregate`]: the [`Aggregate`] contract (`handle` decides, `apply` folds) and [`Rejection`].
//! - [`saga`]: the [`Saga`] contract (events and command replies in, commands out, compensations and
//!   deadlines) and the [`saga::Instance`] the framework keeps around it (awaited commands, retries,
//!   deadline times, history).
//! - [`projection`]: the [`Projection`] contract (an aggregate's events in, [`Change`]s to one read
//!   model's documents out).
//! - [`tracked`]: what the processor keeps per aggregate: version, recent command ids (idempotency) and
//!   the expected-version check (optimistic concurrency).
//! - [`error`]: the four error classes (Transient, Poison, Rejected, Fatal) and the [`Classify`] trait
//!   through which every crate's error says which class it belongs to.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod error;
pub mod projection;
pub mod saga;
pub mod tracked;

pub use aggregate::{Aggregate, Rejection};
pub use error::{Classify, ErrorClass};
pub use projection::{Change, Document, EventInfo, Projection};
pub use saga::{Reaction, Saga};
pub use tracked::{Decision, DedupWindow, Next, Outcome, Tracked};
