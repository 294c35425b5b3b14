//! Shared state handed to every handler: the loaded models and what failed to load.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::repository::ModelFailure;
use crate::runtime::{Model, ModelState};

/// Cheap to clone: everything sits behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    models: BTreeMap<String, Arc<Model>>,
    failures: Vec<ModelFailure>,
    max_body_size: usize,
}

impl AppState {
    pub fn new(models: Vec<Arc<Model>>, failures: Vec<ModelFailure>, max_body_size: usize) -> Self {
        AppState {
            inner: Arc::new(Inner {
                models: models.into_iter().map(|m| (m.name.clone(), m)).collect(),
                failures,
                max_body_size,
            }),
        }
    }

    pub fn model(&self, name: &str) -> Option<Arc<Model>> {
        self.inner.models.get(name).cloned()
    }

    pub fn models(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.inner.models.values()
    }

    pub fn failures(&self) -> &[ModelFailure] {
        &self.inner.failures
    }

    pub fn max_body_size(&self) -> usize {
        self.inner.max_body_size
    }

    /// Ready when no model is still loading and at least one serves: failed models are reported, not
    /// waited for, but a server with nothing to serve is not ready.
    pub fn all_ready(&self) -> bool {
        let states: Vec<ModelState> = self.models().map(|m| m.state()).collect();
        !states.contains(&ModelState::Loading) && states.contains(&ModelState::Ready)
    }
}
