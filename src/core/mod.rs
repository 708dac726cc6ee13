//! Sans-IO delivery core.
