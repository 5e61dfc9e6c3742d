//! The cache's traffic between the workers and the primary.

use std::sync::Arc;

use super::store::Store;

/// Serves the workers' cache requests from `store`.
pub(crate) fn serve(_primary: &crate::Primary, _store: &Arc<Store>) {}
