//! The herald.dev/v1alpha1 custom resources.
