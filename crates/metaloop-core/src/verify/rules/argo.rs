//! Argo Rollouts / Flagger threshold count (to be written).
