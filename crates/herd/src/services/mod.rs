//! Services shared by the whole cluster, built on the core's channel: the
//! [`cache`] (named caches with single-flight loading, held by the
//! primary, with a local copy in each worker).

pub mod cache;
