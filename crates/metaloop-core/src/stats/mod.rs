//! Statistics used by verification and confidence.
