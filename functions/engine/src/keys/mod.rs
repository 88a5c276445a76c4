//! Key-level reads and writes beyond DUMP/RESTORE: keys as native values ([`value`], the
//! `struct` method of design §3), hash-field TTLs ([`field_ttl`]), stream pending entries
//! ([`stream_pel`]), module types ([`module_types`], [`module_values`], [`vectorset`]), and the
//! server-level Redis Functions ([`functions`]).

pub mod digest;
pub mod field_ttl;
pub mod functions;
pub mod module_types;
pub mod module_values;
pub mod stream_meta;
pub mod stream_pel;
pub mod value;
pub mod vectorset;
