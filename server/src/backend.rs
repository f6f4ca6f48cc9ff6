//! The backend plan lives in core ([`clarifycoder_core::backend`]); this adapts its typed error
//! to the `anyhow` errors the binary passes around.

pub use clarifycoder_core::backend::{Plan, PlanError};

/// Whether loading failed because the model file is missing, wherever in the chain of `e` the
/// [`PlanError`] is.
pub fn is_missing_model(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<PlanError>()
            .is_some_and(PlanError::is_missing_model)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use clarifycoder_core::settings::Settings;

    #[test]
    fn a_missing_model_is_found_under_context() {
        let absent = tempfile::tempdir().unwrap().path().join("absent.gguf");
        let flags = Settings {
            model: Some(absent),
            adapter: Some("none".into()),
            ..Settings::default()
        };
        let plan = Plan::new(flags, Settings::default());
        let e = plan.identity().context("cannot load").unwrap_err();
        assert!(is_missing_model(&e), "{e:#}");
        let other = anyhow::Error::new(PlanError::NoEndpoint).context("cannot load");
        assert!(!is_missing_model(&other));
    }
}
