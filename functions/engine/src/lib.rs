//! ferry's engine: everything that talks to Redis, with no AWS dependency.
//!
//! The pieces follow `shared/design.md`: [`inventory`] looks at both servers, [`plan`] splits the
//! keyspace into SCAN cursor ranges, [`copy`] moves keys (DUMP/RESTORE or per-type), [`verify`]
//! proves the result, and [`snapshot`] runs shards in parallel with progress.

pub mod channel;
pub mod cluster;
pub mod conn;
pub mod copy;
pub mod cutover;
pub mod dirty;
pub mod endpoint;
pub mod error;
pub mod fence;
pub mod field_ttl;
pub mod functions;
pub mod inventory;
pub mod lease;
pub mod migrate;
pub mod module_types;
pub mod module_values;
pub mod plan;
pub mod ratelimit;
pub mod resp;
pub mod role;
pub mod scan;
pub mod scan_boundary;
pub mod scope;
pub mod silent;
pub mod slot;
pub mod stream_pel;
pub mod tail;
pub mod util;
pub mod value;
pub mod vectorset;
pub mod verify;

pub use endpoint::{ChangingPassword, Endpoint, PasswordSource, Role, Secret, TlsSettings};
pub use error::{Error, Result};
