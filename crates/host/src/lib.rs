//! What the host allows a gateway (open files, locked memory, TCP
//! settings, free disk) and the process limits it adjusts: `surepush
//! check-host`, the server's start-up, the load generator and tests use the
//! same checks, and the process's own resource use for the metrics. The
//! few raw OS calls they need are wrapped here as safe
//! functions.

pub mod hostcheck;
pub mod limits;
pub mod poll;
pub mod process;
