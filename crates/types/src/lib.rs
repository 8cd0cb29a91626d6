//! The value model shared by every millrace crate: KSML data types ([`DataType`]), values
//! ([`Value`]), the notations that turn values into record bytes and back ([`codec`]), and
//! durations as KSML writes them ([`duration`]), and calendar arithmetic ([`time`]).

pub mod codec;
mod datatype;
pub mod duration;
mod json;
pub mod time;
mod value;

pub use datatype::{DataType, Notation, TypeParseError};
pub use value::{Value, ValueError};
