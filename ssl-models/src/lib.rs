//! ssl-models
