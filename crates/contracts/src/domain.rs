//! A domain, as the services see it: one value a domain crate exports (its aggregates, projections and
//! sagas), and the list of domains a build hosts. A service
//! hosts the domain its config names; services and crates/kafka never name one.
//!
//! A domain crate declares itself:
//!
//! ```text
//! pub fn domain() -> Domain {
//!     Domain::new("bank", include_str!("../topology.toml")).aggregate::<Account>()
//! }
//! ```
//!
//! and the build lists it once, in `domains/hosted` (`causeway-domains`).

use std::sync::Arc;

use causeway_core::saga::Policy;
use causeway_core::tracked::DedupWindow;

use crate::aggregate::AggregateContract;
use crate::hosting::{Host, Hosted, Limits};
use crate::projecting::{Projecting, Projector};
use crate::saga::{Route, SagaContract, SagaHost, SagaObserver};
use causeway_core::projection::Projection;

/// One aggregate type of a domain, and how to host it.
#[derive(Clone, Copy)]
pub struct AggregateType {
    /// Its name, as in topic names (`<context>.<name>.commands`).
    pub name: &'static str,
    /// Namespace of its command and event records.
    pub namespace: &'static str,
    /// The command field holding the aggregate id (the record key).
    pub id_field: &'static str,
    host: fn(&str, DedupWindow, Limits) -> Box<dyn Hosted>,
}

impl std::fmt::Debug for AggregateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateType")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AggregateType {
    /// Aggregate `A`.
    pub fn of<A: AggregateContract>() -> Self {
        Self {
            name: A::TYPE,
            namespace: A::NAMESPACE,
            id_field: A::ID_FIELD,
            host: |context, window, limits| Box::new(Host::<A>::new(context, window, limits)),
        }
    }

    /// A host for it in `context`.
    pub fn host(&self, context: &str, window: DedupWindow, limits: Limits) -> Box<dyn Hosted> {
        (self.host)(context, window, limits)
    }
}

/// One projection of a domain, and how to host it.
#[derive(Clone, Copy)]
pub struct ProjectionType {
    /// Its name (keys, tables, metrics, the CLI).
    pub name: &'static str,
    /// The aggregate type whose events it reads.
    pub aggregate: &'static str,
    host: fn() -> Box<dyn Projecting>,
}

impl std::fmt::Debug for ProjectionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionType")
            .field("name", &self.name)
            .field("aggregate", &self.aggregate)
            .finish_non_exhaustive()
    }
}

impl ProjectionType {
    /// Projection `P`.
    pub fn of<P>() -> Self
    where
        P: Projection,
        P::Aggregate: AggregateContract,
    {
        Self {
            name: P::NAME,
            aggregate: <P::Aggregate as causeway_core::Aggregate>::TYPE,
            host: || Box::new(Projector::<P>::default()),
        }
    }

    /// A host for it.
    pub fn host(&self) -> Box<dyn Projecting> {
        (self.host)()
    }
}

/// One saga type of a domain, and how to host it.
#[derive(Clone, Copy)]
pub struct SagaType {
    /// Its name, as in topic names (`<context>.<name>.inbox`).
    pub name: &'static str,
    /// The aggregate types whose events it reads.
    pub sources: &'static [&'static str],
    /// Its deadlines and their default durations, ms.
    pub deadlines: &'static [(&'static str, i64)],
    host: SagaHostFn,
    route: fn(&str) -> Route,
}

/// Builds a saga's host: context, policy, limits, observer.
type SagaHostFn = fn(&str, Policy, Limits, Arc<dyn SagaObserver>) -> Box<dyn Hosted>;

impl std::fmt::Debug for SagaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaType")
            .field("name", &self.name)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl SagaType {
    /// Saga `S`.
    pub fn of<S: SagaContract>() -> Self {
        Self {
            name: S::NAME,
            sources: S::SOURCES,
            deadlines: S::DEADLINES,
            host: |context, policy, limits, observer| {
                Box::new(SagaHost::<S>::new(context, policy, limits, observer))
            },
            route: Route::of::<S>,
        }
    }

    /// A host for it in `context`.
    pub fn host(
        &self,
        context: &str,
        policy: Policy,
        limits: Limits,
        observer: Arc<dyn SagaObserver>,
    ) -> Box<dyn Hosted> {
        (self.host)(context, policy, limits, observer)
    }

    /// How its inputs find their way to its inbox in `context`.
    pub fn route(&self, context: &str) -> Route {
        (self.route)(context)
    }
}

/// A domain: its name, its default bounded context (the first segment of its topics), its topology
/// file and its aggregate types.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Its name, as services' configs name it.
    pub name: &'static str,
    /// The topology file of its topics (`causeway topics apply`), as text.
    pub topology: &'static str,
    /// Its aggregate types.
    pub aggregates: Vec<AggregateType>,
    /// Its projections (read models).
    pub projections: Vec<ProjectionType>,
    /// Analytics views over its projections' ClickHouse tables.
    pub views: Vec<View>,
    /// Its sagas.
    pub sagas: Vec<SagaType>,
}

/// An analytics view a domain defines over its projections' documents in ClickHouse: a `SELECT` in
/// the SQL that ClickHouse 18.16 and current servers share, naming each projection's table as
/// `{projection-name}` (one row per document: `id`, `version`, `event_time_ms` and its fields as
/// strings; read it with `FINAL`). The ClickHouse projector creates it as `<prefix>_<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Its name.
    pub name: &'static str,
    /// Its `SELECT`.
    pub select: &'static str,
}

impl Domain {
    /// A domain named `name` with `topology`, with no aggregate yet.
    pub fn new(name: &'static str, topology: &'static str) -> Self {
        Self {
            name,
            topology,
            aggregates: Vec::new(),
            projections: Vec::new(),
            views: Vec::new(),
            sagas: Vec::new(),
        }
    }

    /// With saga `S` too.
    pub fn saga<S: SagaContract>(mut self) -> Self {
        self.sagas.push(SagaType::of::<S>());
        self
    }

    /// Its saga named `name`.
    pub fn saga_type(&self, name: &str) -> Option<&SagaType> {
        self.sagas.iter().find(|s| s.name == name)
    }

    /// The names of its sagas.
    pub fn saga_names(&self) -> Vec<&'static str> {
        self.sagas.iter().map(|s| s.name).collect()
    }

    /// With the analytics view `name` defined by `select` (see [`View`]).
    pub fn view(mut self, name: &'static str, select: &'static str) -> Self {
        self.views.push(View { name, select });
        self
    }

    /// With projection `P` too.
    pub fn projection<P>(mut self) -> Self
    where
        P: Projection,
        P::Aggregate: AggregateContract,
    {
        self.projections.push(ProjectionType::of::<P>());
        self
    }

    /// Its projection named `name`.
    pub fn projection_type(&self, name: &str) -> Option<&ProjectionType> {
        self.projections.iter().find(|p| p.name == name)
    }

    /// With aggregate `A` too.
    pub fn aggregate<A: AggregateContract>(mut self) -> Self {
        self.aggregates.push(AggregateType::of::<A>());
        self
    }

    /// Its aggregate type named `name`.
    pub fn aggregate_type(&self, name: &str) -> Option<&AggregateType> {
        self.aggregates.iter().find(|a| a.name == name)
    }

    /// The names of its aggregate types.
    pub fn aggregate_names(&self) -> Vec<&'static str> {
        self.aggregates.iter().map(|a| a.name).collect()
    }
}

/// The domains a build hosts, looked up by name.
#[derive(Debug, Clone, Default)]
pub struct Domains(pub Vec<Domain>);

impl Domains {
    /// The domain named `name`.
    pub fn get(&self, name: &str) -> Option<&Domain> {
        self.0.iter().find(|d| d.name == name)
    }

    /// Their names.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|d| d.name).collect()
    }
}
