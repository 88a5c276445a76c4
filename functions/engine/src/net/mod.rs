//! The network layer, the only code that touches sockets: the RESP codec ([`resp`]), a
//! connection to one server or a whole cluster ([`conn`], routed by [`slot`] over the
//! [`topology`] that [`cluster`] discovers), and what a server says about itself in `INFO` ([`info`]).

pub mod cluster;
pub mod conn;
pub mod info;
pub mod resp;
pub mod slot;
mod tls;
pub mod topology;
mod wire;

pub use wire::{set_reply_timeout, DEFAULT_REPLY_TIMEOUT};
