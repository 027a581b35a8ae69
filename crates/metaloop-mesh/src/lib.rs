//! metaloop's trigger mesh (DESIGN.md §4, §8): the CloudEvents 1.0 envelope, Ed25519
//! signatures following the CloudEvents verifiability extension (DSSE), the key registry,
//! subject patterns with NATS semantics, the ingest pipeline, directives out, and the bus
//! itself behind one [`Mesh`] trait with an in-process and a NATS JetStream backend.
//!
//! `docs/PROTOCOL.md` is the byte-level specification an adapter is written from.
#![forbid(unsafe_code)]

pub mod bench;
pub mod directive;
pub mod dsse;
pub mod envelope;
pub mod ingest;
pub mod keys;
pub mod mesh;
pub mod subject;
pub mod verifiability;

pub use directive::{directive_event, read_directive};
pub use envelope::{CloudEvent, Data, ExtensionValue, JsonData, SizeLimits};
pub use ingest::{IngestConfig, IngestCounters, IngestOutcome, Ingestor, RejectReason, Rejection};
pub use keys::{AdapterKeys, EventSigner, KeyId, KeyRegistry};
pub use mesh::{
    Delivery, MemoryMesh, Mesh, MeshError, Message, NatsMesh, SubscribeOptions, Subscription,
};
pub use subject::{Subject, SubjectPattern, SubjectPrefix};
