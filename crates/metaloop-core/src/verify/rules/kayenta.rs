//! Kayenta's Mann–Whitney judge (to be written).
