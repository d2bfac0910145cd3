//! Support tickets as files `tickets/<id>.md`: the format is `model::tickets`, shared with
//! `gitvps ticket reply|close`; re-exported here, where the handlers and `decide` use it.

pub use model::tickets::*;
